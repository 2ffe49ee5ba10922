package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"concierge/appliance/control"
)

// Acceptance 2: a crawler logged in finds every page and form; then each
// GET and POST without a login is refused (a redirect to /login or 403),
// and each POST of a logged-in browser without the CSRF token, or with a
// wrong one, is refused with 403 and changes nothing.
func TestCrawlEveryPageRefusedWithoutLogin(t *testing.T) {
	b := newTestBox(t, true)
	ids := b.queueMessages(2)
	b.call(control.OpAliasAdd, control.Args{"address": "info@" + testDomain, "targets": testUser}, nil)
	b.call(control.OpRelayAdd, control.Args{"cidr": "10.1.2.0/24"}, nil)
	admin := b.client()
	admin.mustLogin()

	// Crawl: every local link from every page, every form on them.
	seen := map[string]bool{}
	var pages []string
	forms := map[string]*form{} // by action and id
	queue := []string{"/"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		r := admin.get(p)
		if r.status != http.StatusOK {
			t.Errorf("GET %s logged in: status %d", p, r.status)
			continue
		}
		pages = append(pages, p)
		for _, l := range r.links() {
			u, _ := url.Parse(l)
			queue = append(queue, u.Path)
		}
		for _, f := range r.forms(p) {
			forms[f.action+"#"+f.id] = f
		}
	}
	for _, want := range []string{"/", "/identity", "/domains", "/users", "/aliases", "/relay", "/queue", "/queue/" + ids[0], "/netbios", "/link", "/network", "/dhcp", "/diagnostics", "/maintenance", "/maintenance/backup", "/firmware", "/style.css"} {
		if !seen[want] {
			t.Errorf("the crawler did not find %s (found %v)", want, pages)
		}
	}
	var formIDs []string
	for _, f := range forms {
		formIDs = append(formIDs, f.id)
	}
	for _, want := range []string{"logout", "identity", "domain-add", "domain-del", "catchall", "user-add", "user-del", "user-passwd",
		"alias-add", "alias-del", "relay-add", "relay-del", "smarthost", "queue-retry", "queue-del", "queue-flush", "link-settings", "restore", "admin-passwd", "restart", "firmware-apply", "firmware-reboot", "firmware-poweroff"} {
		if !slices.Contains(formIDs, want) {
			t.Errorf("the crawler did not find form %s (found %v)", want, formIDs)
		}
	}
	before := settings(t, b)

	anon := b.client()
	for _, p := range pages {
		r := anon.get(p)
		switch {
		case p == "/style.css":
			if r.status != http.StatusOK {
				t.Errorf("GET /style.css: %d", r.status)
			}
		case r.status != http.StatusSeeOther || r.location() != "/login":
			t.Errorf("GET %s without a login: status %d, location %q; want a redirect to /login", p, r.status, r.location())
		}
	}
	for _, f := range forms {
		// Without a session, even with a token taken from the admin's page.
		if r := anon.post(f.action, f.values); r.status != http.StatusForbidden {
			t.Errorf("POST %s (form %s) without a login: status %d, want 403", f.action, f.id, r.status)
		}
		if f.id == "logout" {
			continue // checked last: it ends the admin's session
		}
		// Logged in, but no token, and a wrong one.
		v := cloneValues(f.values)
		v.Del("csrf")
		if r := admin.post(f.action, v); r.status != http.StatusForbidden {
			t.Errorf("POST %s (form %s) without the CSRF token: status %d, want 403", f.action, f.id, r.status)
		}
		v.Set("csrf", strings.Repeat("A", len(f.values.Get("csrf"))))
		if r := admin.post(f.action, v); r.status != http.StatusForbidden {
			t.Errorf("POST %s (form %s) with a wrong CSRF token: status %d, want 403", f.action, f.id, r.status)
		}
		// From another site (a browser sends its Origin).
		req, _ := http.NewRequest(http.MethodPost, admin.base+f.action, strings.NewReader(f.values.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if r := admin.do(req); r.status != http.StatusForbidden {
			t.Errorf("POST %s (form %s) from another site: status %d, want 403", f.action, f.id, r.status)
		}
	}
	// The login and setup forms have a pre-session token.
	lf := anon.get("/login").form(t, "/login", "login")
	lf.values.Set("password", testAdminPass)
	lf.values.Del("csrf")
	if r := anon.post("/login", lf.values); r.status != http.StatusForbidden {
		t.Errorf("POST /login without the CSRF token: status %d, want 403", r.status)
	}
	if r := b.client().post("/login", url.Values{"password": {testAdminPass}, "csrf": {"x"}}); r.status != http.StatusForbidden {
		t.Errorf("POST /login with a made-up CSRF token: status %d, want 403", r.status)
	}
	if after := settings(t, b); after != before {
		t.Errorf("refused forms changed the settings:\nbefore %s\nafter  %s", before, after)
	}
	var q []control.QueuedMessage
	b.call(control.OpQueueList, nil, &q)
	if len(q) != 2 {
		t.Errorf("refused forms changed the queue: %d messages, want 2", len(q))
	}
	// The session still works, and logging out ends it.
	if r := admin.get("/users"); r.status != http.StatusOK {
		t.Errorf("GET /users after the refused forms: %d", r.status)
	}
	lo := admin.get("/").form(t, "/", "logout")
	if r := admin.post(lo.action, lo.values); r.status != http.StatusSeeOther {
		t.Errorf("logout: %d", r.status)
	}
	if r := admin.get("/users"); r.status != http.StatusSeeOther {
		t.Errorf("GET /users after logout: %d, want a redirect", r.status)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func settings(t *testing.T, b *testBox) string {
	t.Helper()
	var bk control.Backup
	b.call(control.OpBackup, nil, &bk)
	return string(bk.Settings)
}

// Acceptance 2: a user, alias or domain named <script>alert(1)</script>
// is refused or shown as text; no page ever holds a script element.
func TestScriptNamesRefusedOrEscaped(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	const evil = "<script>alert(1)</script>"
	tries := []struct {
		page, form string
		fields     map[string]string
	}{
		{"/users", "user-add", map[string]string{"name": evil, "password": "Long-Enough-Pass-1"}},
		{"/aliases", "alias-add", map[string]string{"address": evil + "@" + testDomain, "targets": testUser}},
		{"/aliases", "alias-add", map[string]string{"address": "ok@" + testDomain, "targets": evil}},
		{"/domains", "domain-add", map[string]string{"domain": evil, "alias_of": ""}},
		{"/domains", "catchall", map[string]string{"domain": testDomain, "target": evil}},
		{"/relay", "relay-add", map[string]string{"cidr": evil}},
		{"/identity", "identity", map[string]string{"hostname": evil}},
		{"/queue", "queue-flush", map[string]string{"domain": evil}},
	}
	for _, tr := range tries {
		r := c.submit(tr.page, tr.form, tr.fields)
		if strings.Contains(strings.ToLower(r.body), "<script") {
			t.Errorf("form %s: the answer holds a script element:\n%s", tr.form, r.body)
		}
		if r.status == http.StatusSeeOther {
			// Accepted: then every page shows it as text.
			for _, p := range []string{"/users", "/aliases", "/domains", "/relay", "/identity", "/queue"} {
				if body := c.get(p).body; strings.Contains(strings.ToLower(body), "<script") {
					t.Errorf("after form %s, %s holds a script element", tr.form, p)
				}
			}
			continue
		}
		if !strings.Contains(r.body, "&lt;script&gt;") {
			t.Errorf("form %s: refused (%d) but the typed value is not shown escaped:\n%s", tr.form, r.status, r.body)
		}
	}
	var users []control.UserEntry
	b.call(control.OpUserList, nil, &users)
	for _, u := range users {
		if strings.Contains(u.Name, "<") {
			t.Errorf("user %q was created", u.Name)
		}
	}
}

// Acceptance 2: ten wrong admin passwords make the login answer "try
// later": then even the right password is refused for a while (the
// limiter engaged; no wall time is measured).
func TestWrongAdminPasswordsSlowTheLogin(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	for i := range 10 {
		r := c.login("Wrong-Password-" + string(rune('a'+i)))
		if r.status != http.StatusForbidden {
			t.Fatalf("wrong password %d: status %d", i+1, r.status)
		}
		if _, ok := r.fieldErrors()["password"]; !ok && r.byClass("error") == "" {
			t.Errorf("wrong password %d: no message shown:\n%s", i+1, r.body)
		}
		if r.header.Get("Set-Cookie") != "" && strings.Contains(r.header.Get("Set-Cookie"), SessionCookie) {
			t.Errorf("wrong password %d got a session cookie", i+1)
		}
	}
	r := c.login(testAdminPass)
	if r.status == http.StatusSeeOther {
		t.Fatalf("after ten wrong passwords the right one logs in at once: the limiter did not engage")
	}
	msg := r.fieldErrors()["password"] + r.byClass("error")
	if !strings.Contains(strings.ToLower(msg), "later") && !strings.Contains(strings.ToLower(msg), "too many") {
		t.Errorf("after ten wrong passwords the answer does not say to try later: %q", msg)
	}
}

// Acceptance 3, the page's half: a change made in the page is visible at
// once through the ops the CLI uses, and a change made through them is
// visible in the page.
func TestPageAndCLISeeEachOther(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()

	c.submitOK("/domains", "domain-add", map[string]string{"domain": "example.net", "alias_of": testDomain})
	c.submitOK("/users", "user-add", map[string]string{"name": "bob", "password": "Bob-River-Stone-93"})
	c.submitOK("/domains", "catchall", map[string]string{"domain": testDomain, "target": "bob"})
	c.submitOK("/aliases", "alias-add", map[string]string{"address": "sales@" + testDomain, "targets": "alice, bob"})
	c.submitOK("/relay", "relay-add", map[string]string{"cidr": "192.168.7.0/24"})
	c.submitOK("/identity", "identity", map[string]string{"hostname": "box.example.net", "workgroup": "SALES"})

	var domains []control.DomainEntry
	b.call(control.OpDomainList, nil, &domains)
	if !slices.ContainsFunc(domains, func(d control.DomainEntry) bool { return d.Name == "example.net" && d.AliasOf == testDomain }) {
		t.Errorf("domain.list after the page added example.net: %+v", domains)
	}
	var users []control.UserEntry
	b.call(control.OpUserList, nil, &users)
	if !slices.ContainsFunc(users, func(u control.UserEntry) bool { return u.Name == "bob" }) {
		t.Errorf("user.list after the page added bob: %+v", users)
	}
	var aliases []control.AliasEntry
	b.call(control.OpAliasList, nil, &aliases)
	has := func(addr string, targets ...string) bool {
		return slices.ContainsFunc(aliases, func(a control.AliasEntry) bool { return a.Address == addr && slices.Equal(a.Targets, targets) })
	}
	if !has("@"+testDomain, "bob") || !has("sales@"+testDomain, "alice", "bob") {
		t.Errorf("alias.list after the page's catch-all and alias: %+v", aliases)
	}
	var relay []string
	b.call(control.OpRelayList, nil, &relay)
	if !slices.Contains(relay, "192.168.7.0/24") {
		t.Errorf("relay.list after the page added a network: %v", relay)
	}
	for key, want := range map[string]string{"hostname": "box.example.net", "nbt.workgroup": "SALES", "nbt.name": "OFFICEBOX"} {
		var k control.ConfigKey
		b.call(control.OpConfigGet, control.Args{"key": key}, &k)
		if k.Value != want {
			t.Errorf("config.get %s after the identity form: %q, want %q", key, k.Value, want)
		}
	}
	// The new user's password set in the page works.
	b.call(control.OpUserPasswd, control.Args{"name": "bob", "password": "Bob-River-Stone-94"}, nil)

	// The other way round.
	b.call(control.OpUserAdd, control.Args{"name": "carol", "password": "Window-Light-Five-5"}, nil)
	b.call(control.OpRelayAdd, control.Args{"cidr": "10.9.0.0/16"}, nil)
	b.call(control.OpConfigSet, control.Args{"key": "nbt.workgroup", "value": "FRONT"}, nil)
	if rows := c.get("/users").tableRows("users"); !slices.ContainsFunc(rows, func(r string) bool { return strings.Contains(r, "carol@"+testDomain) }) {
		t.Errorf("the users page does not show carol added through the op: %q", rows)
	}
	if rows := c.get("/relay").tableRows("relay"); !slices.ContainsFunc(rows, func(r string) bool { return strings.Contains(r, "10.9.0.0/16") }) {
		t.Errorf("the relay page does not show 10.9.0.0/16: %q", rows)
	}
	if v := c.get("/identity").form(t, "/identity", "identity").values.Get("workgroup"); v != "FRONT" {
		t.Errorf("the identity page shows workgroup %q, want FRONT", v)
	}
	// Removing in the page.
	c.submitOK("/aliases", "alias-del", map[string]string{"address": "sales@" + testDomain})
	b.call(control.OpAliasList, nil, &aliases)
	if has("sales@"+testDomain, "alice", "bob") {
		t.Errorf("alias-del left the alias: %+v", aliases)
	}
}

// Errors of an op show next to the field they are about, the form keeps
// what was typed, and never a password.
func TestFieldErrorsNextToTheField(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	cases := []struct {
		page, form string
		fields     map[string]string
		field      string // where the error must show
		kept       string // a field whose typed value must come back
	}{
		{"/domains", "domain-add", map[string]string{"domain": "nodot", "alias_of": ""}, "domain", "domain"},
		{"/users", "user-add", map[string]string{"name": testUser, "password": "Some-Good-Pass-77"}, "name", "name"},
		{"/users", "user-add", map[string]string{"name": "dave", "password": "short"}, "password", "name"},
		{"/relay", "relay-add", map[string]string{"cidr": "10.0.0.0/33"}, "cidr", "cidr"},
		{"/relay", "relay-add", map[string]string{"cidr": "0.0.0.0/0"}, "cidr", "cidr"},
		{"/aliases", "alias-add", map[string]string{"address": "x@elsewhere.example", "targets": testUser}, "address", "targets"},
		{"/users", "user-passwd", map[string]string{"password": "short"}, "password", ""}, // alice's row
		{"/identity", "identity", map[string]string{"hostname": "box.example.org", "workgroup": "BAD/NAME"}, "workgroup", "workgroup"},
		{"/maintenance", "admin-passwd", map[string]string{"password": "One-Pass-Word-1", "password2": "Other-Pass-Word-2"}, "password2", ""},
		{"/dhcp", "dhcp", map[string]string{"enabled": "true", "reservations": "52:54:00:12:34:56=not-an-address", "domain": "office.lan"}, "reservations", "domain"},
		{"/dhcp", "dhcp", map[string]string{"enabled": "true", "lease_time": "forever"}, "lease_time", "lease_time"},
	}
	for _, tc := range cases {
		r := c.submit(tc.page, tc.form, tc.fields)
		if r.status != http.StatusUnprocessableEntity {
			t.Errorf("%s %v: status %d, want 422", tc.form, tc.fields, r.status)
			continue
		}
		errs := r.fieldErrors()
		if errs[tc.field] == "" {
			t.Errorf("%s %v: no error next to %s (errors %v, page error %q)", tc.form, tc.fields, tc.field, errs, r.byClass("error"))
		}
		if tc.kept != "" {
			if got := r.form(t, tc.page, tc.form).values.Get(tc.kept); got != tc.fields[tc.kept] {
				t.Errorf("%s: field %s shows %q after the error, want %q", tc.form, tc.kept, got, tc.fields[tc.kept])
			}
		}
		if tc.form == "identity" {
			var k control.ConfigKey
			b.call(control.OpConfigGet, control.Args{"key": "hostname"}, &k)
			if k.Value != "mail."+testDomain {
				t.Errorf("identity with a bad workgroup changed the hostname to %q: half applied", k.Value)
			}
		}
		for k, v := range tc.fields {
			if strings.Contains(k, "password") && len(v) >= 8 && strings.Contains(r.body, v) {
				t.Errorf("%s: the answer holds the password typed into %s", tc.form, k)
			}
		}
	}
}

// The first-run wizard: every page leads to it on a fresh box; a mistake
// shows next to its field; once done it is gone.
func TestSetupWizard(t *testing.T) {
	b := newTestBox(t, false)
	c := b.client()
	for _, p := range []string{"/", "/users", "/login"} {
		r := c.get(p)
		if p == "/login" {
			if r.status != http.StatusSeeOther || r.location() != "/setup" {
				t.Errorf("GET /login on a fresh box: %d %s, want a redirect to /setup", r.status, r.location())
			}
			continue
		}
		if r.status != http.StatusSeeOther || r.location() != "/setup" {
			t.Errorf("GET %s on a fresh box: %d %s, want a redirect to /setup", p, r.status, r.location())
		}
	}
	fields := map[string]string{"admin_password": testAdminPass, "admin_password2": testAdminPass + "x",
		"hostname": "mail." + testDomain, "domain": testDomain, "user": testUser, "password": testUserPass,
		"nbt_name": "OFFICEBOX", "workgroup": "OFFICE"}
	r := c.submit("/setup", "setup", fields)
	if r.status != http.StatusUnprocessableEntity || r.fieldErrors()["admin_password2"] == "" {
		t.Fatalf("wizard with two different admin passwords: %d, errors %v", r.status, r.fieldErrors())
	}
	f := r.form(t, "/setup", "setup")
	if f.values.Get("domain") != testDomain || f.values.Get("user") != testUser || f.values.Get("admin_password") != "" || f.values.Get("password") != "" {
		t.Errorf("the wizard came back with %v", f.values)
	}
	fields["admin_password2"] = testAdminPass
	fields["domain"] = "nodot"
	r = c.submit("/setup", "setup", fields)
	if r.status != http.StatusUnprocessableEntity || r.fieldErrors()["domain"] == "" {
		t.Fatalf("wizard with a bad domain: %d, errors %v, %q", r.status, r.fieldErrors(), r.byClass("error"))
	}
	fields["domain"] = testDomain
	r = c.submit("/setup", "setup", fields)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/login") {
		t.Fatalf("wizard: %d %s, errors %v %q", r.status, r.location(), r.fieldErrors(), r.byClass("error"))
	}
	if r := c.get(r.location()); r.byClass("notice") == "" {
		t.Errorf("the login page after the wizard says nothing")
	}
	if r := c.get("/setup"); r.status != http.StatusSeeOther || r.location() != "/login" {
		t.Errorf("GET /setup once set up: %d %s", r.status, r.location())
	}
	c.mustLogin()
	var users []control.UserEntry
	b.call(control.OpUserList, nil, &users)
	if len(users) != 1 || users[0].Name != testUser {
		t.Errorf("user.list after the wizard: %+v", users)
	}
	// A second run of the wizard is refused, even with a good token.
	c2 := b.client()
	sf := b.newTokenForm(c2, "/login", "login")
	sf.Set("admin_password", "Another-Admin-Pass-1")
	if r := c2.post("/setup", sf); r.status != http.StatusForbidden {
		t.Errorf("POST /setup once set up: %d, want 403", r.status)
	}
}

// newTokenForm returns the values of a pre-session form of page.
func (b *testBox) newTokenForm(c *client, page, id string) url.Values {
	return c.get(page).form(b.t, page, id).values
}

// Every answer carries the security headers; the session cookie is
// HttpOnly, SameSite=Strict, and Secure over HTTPS.
func TestHeadersAndCookies(t *testing.T) {
	b := newTestBox(t, true)
	tls := httptest.NewTLSServer(b.page)
	defer tls.Close()
	for _, base := range []string{b.ts.URL, tls.URL} {
		c := b.client()
		c.base = base
		c.hc.Transport = tls.Client().Transport
		for _, p := range []string{"/login", "/style.css", "/users", "/nonexistent"} {
			r := c.get(p)
			for k, want := range map[string]string{"Content-Security-Policy": ContentSecurityPolicy, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
				if got := r.header.Get(k); got != want {
					t.Errorf("%s%s: %s %q, want %q", base, p, k, got, want)
				}
			}
		}
		r := c.login(testAdminPass)
		var sc *http.Cookie
		for _, ck := range (&http.Response{Header: r.header}).Cookies() {
			if ck.Name == SessionCookie {
				sc = ck
			}
		}
		if sc == nil {
			t.Fatalf("%s: no session cookie after login (%d)", base, r.status)
		}
		secure := strings.HasPrefix(base, "https")
		if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Secure != secure || len(sc.Value) < 43 {
			t.Errorf("%s: session cookie %+v (want HttpOnly, SameSite=Strict, Secure=%v, 32 random bytes)", base, sc, secure)
		}
	}
	// Nothing inline: no style attribute or element, no script.
	c := b.client()
	c.mustLogin()
	for _, p := range []string{"/", "/identity", "/domains", "/users", "/aliases", "/relay", "/queue", "/netbios", "/maintenance"} {
		body := strings.ToLower(c.get(p).body)
		for _, bad := range []string{"<script", "<style", " style=", "javascript:", "http://", "https://"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s holds %q (the CSP forbids inline code, and no CDN)", p, bad)
			}
		}
	}
}

// Bodies are bounded: a backup upload past 1 MiB is refused, as is an
// oversized ordinary form.
func TestBodyLimits(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	f := c.get("/maintenance").form(t, "/maintenance", "restore")
	big := make([]byte, MaxRestoreBytes+MaxFormBytes+1)
	if r := c.postFile(f.action, f.values, "backup", big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte upload: status %d, want 413", len(big), r.status)
	}
	u := c.get("/users").form(t, "/users", "user-add")
	u.values.Set("name", strings.Repeat("a", MaxFormBytes))
	if r := c.post(u.action, u.values); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte form: status %d, want 413", MaxFormBytes, r.status)
	}
}

// Backup then restore through the page gives the same settings, the
// password hashes included.
func TestBackupRestoreThroughThePage(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	c.submitOK("/users", "user-add", map[string]string{"name": "bob", "password": "Bob-River-Stone-93"})
	r := c.get("/maintenance/backup")
	if r.status != http.StatusOK || !strings.Contains(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("GET /maintenance/backup: %d %q", r.status, r.header.Get("Content-Disposition"))
	}
	backup := []byte(r.body)
	before := settings(t, b)

	fresh := newTestBox(t, true)
	fc := fresh.client()
	fc.mustLogin()
	f := fc.get("/maintenance").form(t, "/maintenance", "restore")
	if r := fc.postFile(f.action, f.values, "backup", []byte("{not a backup")); r.status != http.StatusUnprocessableEntity || r.fieldErrors()["backup"] == "" {
		t.Errorf("restoring garbage: %d, errors %v %q", r.status, r.fieldErrors(), r.byClass("error"))
	}
	if r := fc.postFile(f.action, f.values, "backup", backup); r.status != http.StatusSeeOther {
		t.Fatalf("restore: %d, errors %v %q", r.status, r.fieldErrors(), r.byClass("error"))
	}
	if after := settings(t, fresh); after != before {
		t.Errorf("settings after the restore differ:\nbackup   %s\nrestored %s", before, after)
	}
}

// The status and NetBIOS pages say so when the server does not run (an
// offline control Service), instead of failing.
func TestLivePagesOffline(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	for _, p := range []string{"/", "/netbios"} {
		r := c.get(p)
		if r.status != http.StatusOK {
			t.Errorf("GET %s offline: %d", p, r.status)
		}
	}
	if r := c.get("/queue/nonsense"); r.status == http.StatusOK || strings.Contains(r.body, "<script") {
		t.Errorf("GET /queue/nonsense: %d", r.status)
	}
}

// The DHCP page saves its settings in one edit, as the CLI sees them.
func TestDHCPPageSaves(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	r := c.submit("/dhcp", "dhcp", map[string]string{"enabled": "true", "range_start": "10.1.2.100", "range_end": "10.1.2.150",
		"lease_time": "2h", "reservations": "52:54:00:12:34:56=10.1.2.20", "domain": "office.lan"})
	if r.status != http.StatusOK && r.status != http.StatusSeeOther {
		t.Fatalf("dhcp form: status %d: %s", r.status, r.byClass("error"))
	}
	for key, want := range map[string]string{"dhcp.enabled": "true", "dhcp.range_start": "10.1.2.100", "dhcp.lease_time": "2h0m0s",
		"dhcp.reservations": "52:54:00:12:34:56=10.1.2.20", "dhcp.domain": "office.lan"} {
		var k control.ConfigKey
		b.call(control.OpConfigGet, control.Args{"key": key}, &k)
		if k.Value != want {
			t.Errorf("%s = %q after the form, want %q", key, k.Value, want)
		}
	}
}

package e2e

// Acceptance tests of issue 10 in a real browser: items 1 (the first-run
// wizard, then a domain alias, a user and a catch-all made in the page
// carry real mail), 3 (the page and the CLI see each other's changes at
// once) and 4 (the queue page with a deferred message, the NetBIOS page
// with a name Samba's nmbd registered).

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// What the office admin types into the pages.
const (
	adminPass   = "Blue-Kettle-Morning-42"
	boxHostname = "mail.example.test"
	mailDomain  = "example.test"
	aliasDomain = "example.net"
	firstUser   = "alice"
	firstPass   = "Garden-Path-Seven-7"
	newUser     = "bob"
	newPass     = "River-Stone-Ninety-3"
	nbtName     = "OFFICEBOX"
	workgroup   = "OFFICE"
)

// webBox prepares a fresh box (the first-run wizard not done) on host h
// with the setup page on HTTP port 80 and HTTPS 443 of its LAN address;
// settings are extra "key value" pairs.
func webBox(t *testing.T, h *testnet.Host, settings ...string) *testnet.Box {
	t.Helper()
	b := testnet.NewBox(t, h)
	a := h.Addr.String()
	settings = append([]string{"web.http_listen", a + ":80", "web.https_listen", a + ":443"}, settings...)
	for i := 0; i+1 < len(settings); i += 2 {
		b.CLI("config", "set", settings[i], settings[i+1])
	}
	return b
}

// wizard completes the first-run wizard of a fresh box in the browser and
// logs in with the admin password it set.
func wizard(t *testing.T, b *Browser) {
	t.Helper()
	p := b.Goto("/")
	if p.Path != "/setup" {
		t.Fatalf("a fresh box shows %s (status %d), not the first-run wizard /setup", p.Path, p.Status)
	}
	b.Screenshot("wizard")
	p = b.SubmitOK("setup", "", map[string]string{
		"admin_password": adminPass, "admin_password2": adminPass,
		"hostname": boxHostname, "domain": mailDomain,
		"user": firstUser, "password": firstPass,
		"nbt_name": nbtName, "workgroup": workgroup,
	})
	if p.Path != "/login" {
		t.Fatalf("the wizard ends on %s, not /login (notice %q)", p.Path, p.Notice)
	}
	b.Screenshot("login")
	p = b.SubmitOK("login", "", map[string]string{"password": adminPass})
	if p.Path != "/" {
		t.Fatalf("logging in ends on %s, not the status page /", p.Path)
	}
}

// cliHas fails the test unless the CLI's output holds every want.
func cliHas(t *testing.T, box *testnet.Box, what string, args []string, want ...string) {
	t.Helper()
	out := box.CLI(args...)
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: concierge %s does not show %q:\n%s", what, strings.Join(args, " "), w, out)
		}
	}
}

// Acceptance 1 and 3: on a fresh box Chromium completes the wizard, logs
// in, adds a domain alias, a user and a catch-all; each change shows at
// once in the CLI, and changes made with the CLI show in the page. Then
// swaks delivers to the new user at the alias domain (and to an unknown
// name through the catch-all) and fetchmail collects both with the
// password set in the page. Every page is photographed. With the server
// stopped, the CLI still shows what the page did.
func TestSetupPageFirstRun(t *testing.T) {
	requireBrowser(t, "swaks", "fetchmail", "ss")
	lan := testnet.NewLAN(t, "10.77.50.0/24")
	boxH, pc := lan.AddHost("box", 1), lan.AddHost("pc", 2)
	a := boxH.Addr.String()
	box := webBox(t, boxH, "pop3.listen", a+":110")
	box.Start(80)
	b := StartBrowser(t, pc, "http://"+a, artifacts(t))

	wizard(t, b)
	b.Screenshot("status")
	cliHas(t, box, "the wizard", []string{"config", "get", "hostname"}, boxHostname)
	cliHas(t, box, "the wizard", []string{"config", "get", "nbt.name"}, nbtName)
	cliHas(t, box, "the wizard", []string{"config", "get", "nbt.workgroup"}, workgroup)
	cliHas(t, box, "the wizard", []string{"domain", "list"}, mailDomain)
	cliHas(t, box, "the wizard", []string{"user", "list"}, firstUser+"\t"+firstUser+"@"+mailDomain)

	// The page's changes, each visible through the CLI as soon as the
	// page that follows the form has loaded.
	b.Goto("/domains")
	b.SubmitOK("domain-add", "", map[string]string{"domain": aliasDomain, "alias_of": mailDomain})
	cliHas(t, box, "domain-add", []string{"domain", "list"}, aliasDomain)
	cliHas(t, box, "domain-add", []string{"config", "show"}, aliasDomain)
	b.Goto("/users")
	b.SubmitOK("user-add", "", map[string]string{"name": newUser, "password": newPass})
	cliHas(t, box, "user-add", []string{"user", "list"}, newUser+"\t"+newUser+"@"+mailDomain)
	b.Goto("/domains")
	b.SubmitOK("catchall", "", map[string]string{"domain": mailDomain, "target": newUser})
	cliHas(t, box, "catchall", []string{"alias", "list"}, "@"+mailDomain+"\t"+newUser)
	if rowWith(b.Table("domains"), aliasDomain, mailDomain) == nil {
		t.Errorf("the domains page does not list %s as an alias of %s:\n%s", aliasDomain, mailDomain, texts(b.Table("domains")))
	}

	b.Goto("/identity")
	b.SubmitOK("identity", "", map[string]string{"comment": "Reception desk"})
	cliHas(t, box, "identity", []string{"config", "show"}, "Reception desk")

	// The CLI's changes, visible in the page at its next load.
	box.CLIInput("Window-Light-Five-5\n", "user", "add", "carol")
	box.CLI("relay", "add", "10.77.99.0/24")
	box.CLI("config", "set", "nbt.comment", "Front office")
	b.Goto("/users")
	if rowWith(b.Table("users"), "carol", "carol@"+mailDomain) == nil {
		t.Errorf("a user added with the CLI is not on the users page:\n%s", texts(b.Table("users")))
	}
	if rowWith(b.Table("users"), newUser, newUser+"@"+aliasDomain) == nil {
		t.Errorf("the users page does not show %s's address at the alias domain:\n%s", newUser, texts(b.Table("users")))
	}
	b.Goto("/relay")
	if rowWith(b.Table("relay"), "10.77.99.0/24") == nil {
		t.Errorf("a relay network added with the CLI is not on the relay page:\n%s", texts(b.Table("relay")))
	}
	b.Goto("/identity")
	if v := b.Values("identity"); v["comment"] != "Front office" || v["hostname"] != boxHostname {
		t.Errorf("the identity page shows %v after the CLI set the comment", v)
	}

	photographEveryPage(t, b)
	// The same pages over HTTPS, with the box's own certificate.
	if p := b.Goto("https://" + a + "/"); p.Status != 200 {
		t.Errorf("https://%s/: status %d", a, p.Status)
	}

	// Real mail: to the new user at the alias domain, and to a name
	// nobody has, which the catch-all gives the new user.
	for i, to := range []string{newUser + "@" + aliasDomain, "nobody@" + mailDomain} {
		out, err := pc.Output("swaks", "--server", a, "--port", "25", "--from", "someone@outside.test", "--to", to,
			"--header", fmt.Sprintf("Subject: setup page test %d", i), "--body", fmt.Sprintf("marker-%d for %s", i, to))
		if err != nil {
			t.Fatalf("swaks to %s: %v\n%s", to, err, out)
		}
	}
	if got := len(box.Maildir(newUser)); got != 2 {
		t.Fatalf("%s's mailbox holds %d messages after two deliveries, want 2", newUser, got)
	}
	got, log, err := pc.Fetchmail(a, newUser, newPass, "keep sslproto 'tls1.2+' no sslcertck")
	if err != nil {
		t.Fatalf("fetchmail as %s: %v\n%s", newUser, err, log)
	}
	for i, to := range []string{newUser + "@" + aliasDomain, "nobody@" + mailDomain} {
		want := fmt.Sprintf("marker-%d for %s", i, to)
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("fetchmail as %s did not collect the message with %q:\n%s", newUser, want, log)
		}
	}
	// Logging out ends the session in the browser.
	b.SubmitOK("logout", "", nil)
	if p := b.Goto("/users"); p.Path != "/login" {
		t.Errorf("after logging out /users shows %s, not the login page", p.Path)
	}
	// With the server stopped the CLI still reads what the page wrote.
	box.Stop()
	cliHas(t, box, "the server stopped", []string{"user", "list"}, newUser+"\t"+newUser+"@"+mailDomain)
	cliHas(t, box, "the server stopped", []string{"alias", "list"}, "@"+mailDomain+"\t"+newUser)
	b.PublishScreenshots("wizard", "status", "users")
}

// photographEveryPage follows every link of the navigation and saves a
// full-page screenshot of each (named after its path: "/" is "status"),
// then the status page as a phone shows it.
func photographEveryPage(t *testing.T, b *Browser) {
	t.Helper()
	b.Goto("/")
	links := b.Links("nav a")
	if len(links) < 8 {
		t.Errorf("the navigation has %d links, want one per page (status, identity, domains, users, relay, queue, netbios, maintenance): %v", len(links), links)
	}
	for _, href := range links {
		p := b.Goto(href)
		if p.Status != 200 {
			t.Errorf("%s: status %d", href, p.Status)
		}
		b.Screenshot(shotName(p.Path))
	}
	b.Viewport(390, 844)
	b.Goto("/")
	b.Screenshot("status-phone")
	b.Viewport(1024, 768)
}

func shotName(path string) string {
	name := strings.Trim(strings.ReplaceAll(path, "/", "-"), "-")
	if name == "" {
		return "status"
	}
	return name
}

// Acceptance 4: the queue page lists a message the box cannot deliver
// (its resolver is dead), retries it and deletes it; the NetBIOS page
// shows the names Samba's nmbd registered with the box as its WINS server.
func TestSetupPageQueueAndNetBIOS(t *testing.T) {
	requireBrowser(t, "swaks", "nmbd", "ss")
	lan := testnet.NewLAN(t, "10.77.51.0/24")
	boxH, pc, winsPC := lan.AddHost("box", 1), lan.AddHost("pc", 2), lan.AddHost("winspc", 3)
	a := boxH.Addr.String()
	// Nothing answers DNS on the box's loopback: outbound mail waits.
	box := webBox(t, boxH, "nbt.enabled", "true", "nbt.interfaces", boxH.IF, "delivery.dns_servers", "127.0.0.1:53")
	box.Start(80)
	winsPC.StartNmbd("OFFICEPC", workgroup, "wins server = "+a)
	b := StartBrowser(t, pc, "http://"+a, artifacts(t))
	wizard(t, b)

	out, err := pc.Output("swaks", "--server", a, "--port", "587", "--tls", "--auth", "PLAIN",
		"--auth-user", firstUser, "--auth-password", firstPass,
		"--from", firstUser+"@"+mailDomain, "--to", "friend@remote.test", "--header", "Subject: waits in the queue")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	deferred := regexp.MustCompile(`msg="delivery deferred" .*\bid=(\S+) to=friend@remote.test attempts=(\d+)`)
	id := waitLog(t, box, deferred, 1)
	b.Goto("/queue")
	row := rowWith(b.Table("queue"), "friend@remote.test")
	if row == nil || row.ID != id {
		t.Fatalf("the queue page does not list message %s to friend@remote.test:\n%s", id, texts(b.Table("queue")))
	}
	cliHas(t, box, "the queue page", []string{"queue", "list"}, id, "friend@remote.test")
	b.Screenshot("queue")
	b.Goto("/queue/" + id)
	b.Screenshot("queue-message")
	if rowWith(b.Table("recipients"), "friend@remote.test", "1", "DNS") == nil {
		t.Errorf("the message's page does not show one failed try and its DNS error:\n%s", texts(b.Table("recipients")))
	}

	// Retry: the box tries again at once (and fails again).
	b.SubmitOK("queue-retry", "", nil)
	waitLog(t, box, deferred, 2)
	b.Goto("/queue/" + id)
	if rowWith(b.Table("recipients"), "friend@remote.test", "2", "DNS") == nil {
		t.Errorf("the message's page does not show the second try:\n%s", texts(b.Table("recipients")))
	}
	b.SubmitOK("queue-del", "", nil)
	b.Goto("/queue")
	if rows := b.Table("queue"); rowWith(rows, id) != nil || rowWith(rows, "friend@remote.test") != nil {
		t.Errorf("message %s still on the queue page after queue-del:\n%s", id, texts(rows))
	}
	cliHas(t, box, "queue-del", []string{"queue", "list"}, "the queue is empty")

	// NetBIOS: the box's names (from the wizard) and nmbd's in the WINS
	// table.
	waitLog(t, box, regexp.MustCompile(`msg="nbt: WINS registration" .*name=OFFICEPC<00> `), 1)
	box.WaitNamesClaimed(2) // at the start, then under the wizard's name
	b.Goto("/netbios")
	b.Screenshot("netbios")
	if rowWith(b.Table("names"), nbtName) == nil {
		t.Errorf("the NetBIOS page does not list the box's name %s:\n%s", nbtName, texts(b.Table("names")))
	}
	wins := b.Table("wins")
	for _, n := range []string{"OFFICEPC", workgroup} {
		if rowWith(wins, n, winsPC.Addr.String()) == nil {
			t.Errorf("the WINS table on the NetBIOS page lacks %s at %s:\n%s", n, winsPC.Addr, texts(wins))
		}
	}
	b.PublishScreenshots("queue", "netbios")
}

// waitLog waits until the box's log matches re count times and returns
// the first submatch of the last match (or the whole match).
func waitLog(t *testing.T, box *testnet.Box, re *regexp.Regexp, count int) string {
	t.Helper()
	var last []string
	ok := testnet.WaitFor(30*time.Second, func() bool {
		m := re.FindAllStringSubmatch(box.Proc.Out.String(), -1)
		if len(m) >= count {
			last = m[count-1]
		}
		return len(m) >= count
	})
	if !ok {
		t.Fatalf("the box did not log %d× %s within 30s:\n%s", count, re, box.Proc.Out.String())
	}
	if len(last) > 1 {
		return last[1]
	}
	return last[0]
}

package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/appliance/timesync"
)

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /style.css", s.serveStyle)
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("GET /setup", s.setupPage)
	m.HandleFunc("POST /setup", s.setup)
	m.HandleFunc("POST /logout", s.logout)
	for _, v := range views {
		m.HandleFunc("GET "+v.path, s.view(v))
	}
	for _, a := range actions {
		m.HandleFunc("POST "+a.path, s.act(a))
	}
	m.HandleFunc("GET /maintenance/backup", s.backup)
	m.HandleFunc("POST /maintenance/restore", s.restore)
	m.HandleFunc("POST /maintenance/restart", s.restartAction)
	m.HandleFunc("POST /network", s.networkSet)
	m.HandleFunc("POST /firmware/apply", s.firmwareApply)
	m.HandleFunc("POST /firmware/reboot", s.firmwareStop(control.OpReboot, "reboot", "The box is restarting. This page comes back in about a minute."))
	m.HandleFunc("POST /firmware/poweroff", s.firmwareStop(control.OpPowerOff, "power-off", "The box is switching off. It comes back when its power button is pressed."))
	return m
}

func init() {
	// An error of an op about no field in particular goes next to the
	// field of a per-row form's row, or a form's one field.
	for _, a := range actions {
		f := a.key
		if f == "" && len(a.fields)+len(a.secret) == 1 {
			f = slices.Concat(a.fields, a.secret)[0]
		}
		if f == "" {
			continue
		}
		if a.rename == nil {
			a.rename = map[string]string{}
		}
		if _, ok := a.rename[""]; !ok {
			a.rename[""] = f
		}
	}
}

// A view is a page that shows data: its path, template and loader.
type view struct {
	path, name, title string
	load              func(ctx context.Context, c control.Caller, r *http.Request) (any, error)
}

var views = []*view{
	{"/{$}", "status", "Status", loadStatus},
	{"/identity", "identity", "Identity", loadIdentity},
	{"/domains", "domains", "Mail domains", loadDomains},
	{"/users", "users", "Users", loadUsers},
	{"/aliases", "aliases", "Aliases", loadAliases},
	{"/relay", "relay", "Sending", loadRelay},
	{"/queue", "queue", "Outgoing mail queue", loadQueue},
	{"/queue/{id}", "message", "Queued message", loadMessage},
	{"/netbios", "netbios", "NetBIOS names", loadNetBIOS},
	{"/dhcp", "dhcp", "Addresses for the office's computers (DHCP)", loadDHCP},
	{"/network", "network", "Network", loadNetwork},
	{"/diagnostics", "diagnostics", "Diagnostics", loadDiagnostics},
	{"/link", "link", "ISP link", loadLink},
	{"/maintenance", "maintenance", "Maintenance", nil},
	{"/firmware", "firmware", "Firmware", loadFirmware},
}

func viewOf(name string) *view {
	for _, v := range views {
		if v.name == name {
			return v
		}
	}
	panic("web: no view " + name)
}

func (s *Server) view(v *view) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := s.loadPage(r, v)
		status := http.StatusOK
		var ce *control.Error
		if p.Data == nil && errors.As(p.err, &ce) && (ce.Code == control.CodeNotFound || ce.Code == control.CodeInvalid) {
			status = http.StatusNotFound
		}
		s.render(w, r, status, v.name, &p.page)
	}
}

type loaded struct {
	page
	err error
}

func (s *Server) loadPage(r *http.Request, v *view) *loaded {
	p := &loaded{page: page{Title: v.title}}
	if v.load == nil {
		return p
	}
	ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
	defer cancel()
	data, err := v.load(ctx, s.ctl, r)
	p.Data, p.err = data, err
	if err != nil {
		p.Error = err.Error()
	}
	return p
}

// An action is a form: the path it posts to, the page it belongs to, its
// fields and the ops it runs.
type action struct {
	path, form, view string
	fields           []string // sent back when the form fails
	secret           []string // never sent back (passwords)
	// key is the field naming the row of a per-row form.
	key string
	// rename maps an op's field names to the form's.
	rename map[string]string
	run    func(ctx context.Context, c control.Caller, f map[string]string) (notice string, err error)
}

var actions = []*action{
	{path: "/identity", form: "identity", view: "identity", fields: []string{"hostname", "nbt_name", "workgroup", "comment"}, run: setIdentity},
	{path: "/netbios/reverse", form: "reverse", view: "netbios", fields: []string{"reverse_gateways"}, run: setReverse},
	{path: "/domains/add", form: "domain-add", view: "domains", fields: []string{"domain", "alias_of"}, rename: map[string]string{"alias-of": "alias_of"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Domain " + f["domain"] + " added.", c.Call(ctx, control.OpDomainAdd, control.Args{"domain": f["domain"], "alias_of": f["alias_of"]}, nil)
		}},
	{path: "/domains/del", form: "domain-del", view: "domains", fields: []string{"domain"}, key: "domain",
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Domain " + f["domain"] + " removed.", c.Call(ctx, control.OpDomainDel, control.Args{"domain": f["domain"]}, nil)
		}},
	{path: "/domains/catchall", form: "catchall", view: "domains", fields: []string{"domain", "target"}, rename: map[string]string{"address": "domain", "targets": "target"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			d := strings.TrimPrefix(strings.TrimSpace(f["domain"]), "@")
			if d == "" {
				return "", fieldError("domain", "Give the domain whose unknown addresses should be caught.")
			}
			return "Catch-all for " + d + " set.", c.Call(ctx, control.OpAliasAdd, control.Args{"address": "@" + d, "targets": f["target"]}, nil)
		}},
	{path: "/domains/catchall-del", form: "catchall-del", view: "domains", fields: []string{"address"}, key: "address",
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Catch-all " + f["address"] + " removed.", c.Call(ctx, control.OpAliasDel, control.Args{"address": f["address"]}, nil)
		}},
	{path: "/users/add", form: "user-add", view: "users", fields: []string{"name"}, secret: []string{"password"}, rename: map[string]string{"user": "name"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "User " + f["name"] + " added.", c.Call(ctx, control.OpUserAdd, control.Args{"name": f["name"], "password": f["password"]}, nil)
		}},
	{path: "/users/del", form: "user-del", view: "users", fields: []string{"name"}, key: "name", rename: map[string]string{"user": "name"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "User " + f["name"] + " removed (the mailbox is kept on the box).", c.Call(ctx, control.OpUserDel, control.Args{"name": f["name"]}, nil)
		}},
	{path: "/users/passwd", form: "user-passwd", view: "users", fields: []string{"name"}, secret: []string{"password"}, key: "name", rename: map[string]string{"user": "name"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Password of " + f["name"] + " changed.", c.Call(ctx, control.OpUserPasswd, control.Args{"name": f["name"], "password": f["password"]}, nil)
		}},
	{path: "/aliases/add", form: "alias-add", view: "aliases", fields: []string{"address", "targets"}, rename: map[string]string{"target": "targets"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Alias " + f["address"] + " saved.", c.Call(ctx, control.OpAliasAdd, control.Args{"address": f["address"], "targets": listArg(f["targets"])}, nil)
		}},
	{path: "/aliases/del", form: "alias-del", view: "aliases", fields: []string{"address"}, key: "address",
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Alias " + f["address"] + " removed.", c.Call(ctx, control.OpAliasDel, control.Args{"address": f["address"]}, nil)
		}},
	{path: "/relay/add", form: "relay-add", view: "relay", fields: []string{"cidr"}, rename: map[string]string{"relay": "cidr"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Network " + f["cidr"] + " may now send without a password.", c.Call(ctx, control.OpRelayAdd, control.Args{"cidr": f["cidr"]}, nil)
		}},
	{path: "/relay/del", form: "relay-del", view: "relay", fields: []string{"cidr"}, key: "cidr", rename: map[string]string{"relay": "cidr"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Network " + f["cidr"] + " removed.", c.Call(ctx, control.OpRelayDel, control.Args{"cidr": f["cidr"]}, nil)
		}},
	{path: "/dhcp", form: "dhcp", view: "dhcp", fields: dhcpFields, run: setDHCP},
	{path: "/relay/smarthost", form: "smarthost", view: "relay", fields: []string{"host", "port", "user", "tls"}, secret: []string{"password"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			args := control.Args{"host": f["host"], "port": f["port"], "user": f["user"], "tls": f["tls"]}
			if f["password"] != "" {
				args["password"] = f["password"]
			}
			if f["host"] == "" {
				return "Mail now goes out directly to each recipient's mail server.", c.Call(ctx, control.OpSmarthostSet, args, nil)
			}
			return "Mail now goes out through " + f["host"] + ".", c.Call(ctx, control.OpSmarthostSet, args, nil)
		}},
	{path: "/queue/retry", form: "queue-retry", view: "queue", fields: []string{"id"}, key: "id",
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Message " + f["id"] + " will be tried again now.", c.Call(ctx, control.OpQueueRetry, control.Args{"id": f["id"]}, nil)
		}},
	{path: "/queue/del", form: "queue-del", view: "queue", fields: []string{"id"}, key: "id",
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			return "Message " + f["id"] + " deleted (no notice goes to the sender).", c.Call(ctx, control.OpQueueDel, control.Args{"id": f["id"]}, nil)
		}},
	{path: "/queue/flush", form: "queue-flush", view: "queue", fields: []string{"domain"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			var ch control.QueueChange
			if err := c.Call(ctx, control.OpQueueFlush, control.Args{"domain": f["domain"]}, &ch); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d message(s) will be tried again now.", ch.Messages), nil
		}},
	{path: "/network/confirm", form: "network-confirm", view: "network", run: confirmNetwork},
	{path: "/diagnostics/run", form: "diag-run", view: "diagnostics", run: runDiagnostics},
	{path: "/maintenance/passwd", form: "admin-passwd", view: "maintenance", secret: []string{"password", "password2"},
		run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
			if f["password"] != f["password2"] {
				return "", fieldError("password2", "The two passwords are not the same.")
			}
			return "The admin password is changed. Other browsers logged in as admin were logged out.", c.Call(ctx, control.OpAdminPasswd, control.Args{"password": f["password"]}, nil)
		}},
}

func fieldError(field, msg string) error {
	return &control.Error{Code: control.CodeInvalid, Fields: map[string]string{field: msg}}
}

// listArg turns what the admin typed into a list argument: entries
// separated by commas, spaces or new lines.
func listArg(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }), ",")
}

func (s *Server) act(a *action) http.HandlerFunc {
	v := viewOf(a.view)
	return func(w http.ResponseWriter, r *http.Request) {
		f := map[string]string{}
		for _, k := range a.fields {
			f[k] = strings.TrimSpace(r.PostFormValue(k))
		}
		for _, k := range a.secret {
			f[k] = r.PostFormValue(k)
		}
		ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
		notice, err := a.run(ctx, s.ctl, f)
		cancel()
		sess := sessionOf(r)
		if err == nil {
			if a.form == "admin-passwd" {
				s.sessions.endOthers(sess)
			}
			s.sessions.setNotice(sess, notice)
			http.Redirect(w, r, strings.TrimSuffix(v.path, "{$}"), http.StatusSeeOther)
			return
		}
		p := s.loadPage(r, v)
		shown := map[string]string{}
		for _, k := range a.fields {
			shown[k] = f[k]
		}
		for _, k := range a.secret {
			shown[k] = "" // known, so its error goes next to it; never sent back
		}
		id := a.form
		if a.key != "" {
			id += ":" + f[a.key]
		}
		failed(&p.page, id, err, shown, a.rename)
		s.render(w, r, http.StatusUnprocessableEntity, v.name, &p.page)
	}
}

// The pages' data.

type statusData struct {
	Status    *control.Status
	StatusErr string
	DHCP      *control.DHCPStatus // nil while the DHCP server is off
	Time      *timesync.Status
	Log       []control.LogLine
	LogErr    string
}

func loadStatus(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	d := &statusData{}
	var st control.Status
	if err := c.Call(ctx, control.OpStatus, nil, &st); err != nil {
		d.StatusErr = err.Error()
	} else {
		d.Status = &st
	}
	var ts timesync.Status
	if err := c.Call(ctx, control.OpTimeStatus, nil, &ts); err == nil {
		d.Time = &ts
	}
	var dhcp control.DHCPStatus
	if err := c.Call(ctx, control.OpDHCPStatus, nil, &dhcp); err == nil && dhcp.Enabled {
		d.DHCP = &dhcp
	}
	if err := c.Call(ctx, control.OpLogRecent, control.Args{"n": fmt.Sprint(LogLines)}, &d.Log); err != nil {
		d.LogErr = err.Error()
	}
	return d, nil
}

type identityData struct {
	Hostname, NBTName, Workgroup, Comment string
}

// identityKeys are the settings of the identity form, by field.
var identityKeys = []configKey{
	{"hostname", "hostname"},
	{"nbt_name", "nbt.name"},
	{"workgroup", "nbt.workgroup"},
	{"comment", "nbt.comment"},
}

func loadIdentity(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	cur, err := identityValues(ctx, c)
	if err != nil {
		return nil, err
	}
	return &identityData{cur["hostname"], cur["nbt_name"], cur["workgroup"], cur["comment"]}, nil
}

// identityValues reads the identity settings with one op.
func identityValues(ctx context.Context, c control.Caller) (map[string]string, error) {
	var cfg config.Config
	if err := c.Call(ctx, control.OpSettingsGet, nil, &cfg); err != nil {
		return nil, err
	}
	return map[string]string{"hostname": cfg.Hostname, "nbt_name": cfg.NBT.Name, "workgroup": cfg.NBT.Workgroup, "comment": cfg.NBT.Comment}, nil
}

// setIdentity sets the identity keys that changed (setConfigKeys).
func setIdentity(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
	cur, err := identityValues(ctx, c)
	if err != nil {
		return "", err
	}
	return setConfigKeys(ctx, c, identityKeys, cur, f)
}

type domainsData struct {
	Domains   []control.DomainEntry
	CatchAlls []control.AliasEntry
}

func loadDomains(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	d := &domainsData{}
	if err := c.Call(ctx, control.OpDomainList, nil, &d.Domains); err != nil {
		return nil, err
	}
	var all []control.AliasEntry
	if err := c.Call(ctx, control.OpAliasList, nil, &all); err != nil {
		return nil, err
	}
	for _, a := range all {
		if a.CatchAll || strings.HasPrefix(a.Address, "@") {
			d.CatchAlls = append(d.CatchAlls, a)
		}
	}
	return d, nil
}

func loadUsers(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	var users []control.UserEntry
	err := c.Call(ctx, control.OpUserList, nil, &users)
	return users, err
}

func loadAliases(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	var all, out []control.AliasEntry
	if err := c.Call(ctx, control.OpAliasList, nil, &all); err != nil {
		return nil, err
	}
	for _, a := range all {
		if !a.CatchAll && !strings.HasPrefix(a.Address, "@") {
			out = append(out, a)
		}
	}
	return out, nil
}

type relayData struct {
	Networks              []string
	Host, Port, User, TLS string
	PasswordSet           bool
	TLSChoices            []string
}

func loadRelay(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	d := &relayData{TLSChoices: []string{"starttls", "tls"}}
	var cfg config.Config
	if err := c.Call(ctx, control.OpSettingsGet, nil, &cfg); err != nil {
		return nil, err
	}
	d.Networks = cfg.RelayNetworks
	dl := cfg.Delivery
	if dl.Smarthost != "" {
		if h, p, err := net.SplitHostPort(dl.Smarthost); err == nil {
			d.Host, d.Port = h, p
		} else {
			d.Host = dl.Smarthost
		}
	}
	d.User, d.TLS, d.PasswordSet = dl.SmarthostUser, dl.SmarthostTLS, dl.SmarthostPassword != ""
	if !slices.Contains(d.TLSChoices, d.TLS) {
		d.TLS = "starttls"
	}
	return d, nil
}

func loadQueue(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	var q []control.QueuedMessage
	err := c.Call(ctx, control.OpQueueList, nil, &q)
	return q, err
}

func loadMessage(ctx context.Context, c control.Caller, r *http.Request) (any, error) {
	var m control.QueuedMessage
	if err := c.Call(ctx, control.OpQueueShow, control.Args{"id": r.PathValue("id")}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// netbiosData is the NetBIOS page: the name service and, while they
// run, the session and datagram services.
type netbiosData struct {
	*control.NBTNames
	Sess *control.NBTSessions
	// Reverse is the reverse gateways setting, for its form.
	Reverse string
}

func loadNetBIOS(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	d := &netbiosData{NBTNames: &control.NBTNames{}}
	if cur, err := reverseValues(ctx, c); err == nil {
		d.Reverse = cur["reverse_gateways"]
	}
	if err := c.Call(ctx, control.OpNBTNames, nil, d.NBTNames); err != nil {
		return d, err
	}
	var s control.NBTSessions
	if err := c.Call(ctx, control.OpNBTSessions, nil, &s); err == nil && s.Running {
		d.Sess = &s
	}
	return d, nil
}

// dhcpFields are the DHCP form's fields, each the setting dhcp.NAME.
var dhcpFields = []string{"enabled", "interface", "range_start", "range_end", "lease_time", "router", "dns_servers", "domain", "reservations", "wins"}

type dhcpData struct {
	Form map[string]string // the settings as the form shows them
	Live *control.DHCPStatus
}

func loadDHCP(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	var cfg config.Config
	if err := c.Call(ctx, control.OpSettingsGet, nil, &cfg); err != nil {
		return nil, err
	}
	d := &dhcpData{Form: map[string]string{}}
	for _, f := range dhcpFields {
		d.Form[f], _ = cfg.Get("dhcp." + f)
	}
	var live control.DHCPStatus
	if err := c.Call(ctx, control.OpDHCPStatus, nil, &live); err == nil {
		d.Live = &live
	}
	return d, nil
}

func setDHCP(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
	a := control.Args{}
	for _, k := range dhcpFields {
		a[k] = f[k]
	}
	return "DHCP settings saved.", c.Call(ctx, control.OpDHCPSet, a, nil)
}

// Login, setup, logout.

// preSession returns the browser's pre-session cookie value, setting a new
// one when it has none.
func (s *Server) preSession(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) >= idLen {
		return c.Value
	}
	v := randomToken()
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: v, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return v
}

// checkPre parses the form and checks the pre-session CSRF token.
func (s *Server) checkPre(w http.ResponseWriter, r *http.Request) bool {
	if err := parseForm(r); err != nil {
		tooLarge(w, err)
		return false
	}
	c, err := r.Cookie(preCookie)
	if err != nil || !tokenEqual(r.PostFormValue("csrf"), s.sessions.preToken(c.Value)) {
		forbidden(w, "This form has expired. Go back, reload the page and try again.")
		return false
	}
	return true
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if done, err := s.isSetupDone(r.Context()); err == nil && !done {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	if s.sessions.get(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	p := &page{Title: "Log in", CSRF: s.sessions.preToken(s.preSession(w, r))}
	if r.URL.Query().Has("setup") {
		p.Notice = "The box is set up. Log in with the admin password you chose."
	}
	s.render(w, r, http.StatusOK, "login", p)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.checkPre(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
	defer cancel()
	err := s.ctl.Call(ctx, control.OpAdminCheck, control.Args{"password": r.PostFormValue("password"), "ip": clientIP(r)}, nil)
	if err != nil {
		p := &page{Title: "Log in", CSRF: s.sessions.preToken(s.preSession(w, r))}
		failed(p, "login", err, map[string]string{"password": ""}, nil)
		s.log.Info("web: login refused", "ip", clientIP(r), "err", err)
		s.render(w, r, http.StatusForbidden, "login", p)
		return
	}
	id, _ := s.sessions.create()
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("web: admin logged in", "ip", clientIP(r))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.sessions.end(sessionOf(r))
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// setupFields are the wizard's fields shown again when it fails.
var setupFields = []string{"hostname", "domain", "user", "nbt_name", "workgroup"}

type setupData struct{ Hostname, NBTName, Workgroup string }

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	done, err := s.isSetupDone(r.Context())
	if done {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	p := &page{Title: "Set up the box", CSRF: s.sessions.preToken(s.preSession(w, r)), Data: s.setupDefaults(r.Context())}
	if err != nil {
		p.Error = err.Error()
	}
	s.render(w, r, http.StatusOK, "setup", p)
}

func (s *Server) setupDefaults(ctx context.Context) *setupData {
	d := &setupData{NBTName: config.DefaultNBT().Name, Workgroup: config.DefaultNBT().Workgroup}
	var st control.SetupState
	if s.ctl.Call(ctx, control.OpSetupState, nil, &st) == nil {
		d.Hostname = st.Hostname
	}
	return d
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request) {
	if !s.checkPre(w, r) {
		return
	}
	if done, _ := s.isSetupDone(r.Context()); done {
		forbidden(w, "The box is already set up. Log in to change its settings.")
		return
	}
	f := map[string]string{}
	for _, k := range setupFields {
		f[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
	defer cancel()
	var err error
	if r.PostFormValue("admin_password") != r.PostFormValue("admin_password2") {
		err = fieldError("admin_password2", "The two admin passwords are not the same.")
	} else {
		args := control.Args{"admin_password": r.PostFormValue("admin_password"), "password": r.PostFormValue("password")}
		for k, v := range f {
			args[k] = v
		}
		err = s.ctl.Call(ctx, control.OpSetupInit, args, nil)
	}
	if err != nil {
		p := &page{Title: "Set up the box", CSRF: s.sessions.preToken(s.preSession(w, r)), Data: s.setupDefaults(ctx)}
		for _, k := range []string{"admin_password", "admin_password2", "password"} {
			f[k] = ""
		}
		failed(p, "setup", err, f, nil)
		s.render(w, r, http.StatusUnprocessableEntity, "setup", p)
		return
	}
	s.setupDone.Store(true)
	s.log.Info("web: first-run setup done", "ip", clientIP(r))
	http.Redirect(w, r, "/login?setup=done", http.StatusSeeOther)
}

// Maintenance.

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
	defer cancel()
	var b json.RawMessage
	if err := s.ctl.Call(ctx, control.OpBackup, nil, &b); err != nil {
		p := s.loadPage(r, viewOf("maintenance"))
		p.Error = "The backup could not be made: " + err.Error()
		s.render(w, r, http.StatusInternalServerError, "maintenance", &p.page)
		return
	}
	name := "concierge-backup-" + time.Now().UTC().Format("2006-01-02") + ".json"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Write(b)
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	var err error
	file, _, ferr := r.FormFile("backup")
	if ferr != nil {
		err = fieldError("backup", "Choose the backup file to restore.")
	} else {
		defer file.Close()
		var b []byte
		b, err = io.ReadAll(io.LimitReader(file, MaxRestoreBytes+1))
		switch {
		case err != nil:
		case len(b) > MaxRestoreBytes:
			err = fieldError("backup", fmt.Sprintf("This file is larger than a backup can be (%d bytes at most).", MaxRestoreBytes))
		default:
			ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
			err = s.ctl.Call(ctx, control.OpRestore, control.Args{"backup": string(b)}, nil)
			cancel()
		}
	}
	if err == nil {
		s.sessions.setNotice(sessionOf(r), "The backup is restored and in force.")
		http.Redirect(w, r, "/maintenance", http.StatusSeeOther)
		return
	}
	p := s.loadPage(r, viewOf("maintenance"))
	failed(&p.page, "restore", err, map[string]string{"backup": ""}, map[string]string{"": "backup"})
	s.render(w, r, http.StatusUnprocessableEntity, "maintenance", &p.page)
}

func (s *Server) restartAction(w http.ResponseWriter, r *http.Request) {
	s.log.Info("web: restart asked", "ip", clientIP(r))
	s.sessions.setNotice(sessionOf(r), "The services are restarting; this takes a few seconds.")
	http.Redirect(w, r, "/", http.StatusSeeOther)
	go s.restart()
}

package appliance_test

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"concierge/internal/testnet"
)

// The LAN of the diagnostics test: the box (whose address stands for its
// public address), the DNS server, and an office PC with a browser.
const (
	diagNet   = "10.77.111"
	diagBox   = diagNet + ".1"
	diagDNS   = diagNet + ".53"
	diagAdmin = "Blue-Kettle-Morning-42"
)

// diagZone is a zone that agrees with the box: the MX of example.test is
// mail.example.test, which is the box's address, whose reverse name is
// mail.example.test, the box's banner name.
var diagZone = []string{
	"--mx-host=example.test,mail.example.test,10",
	"--address=/mail.example.test/" + diagBox,
	"--ptr-record=1.111.77.10.in-addr.arpa,mail.example.test",
}

// diagBrokenZone has the problems the page must name: a wrong reverse
// name, an MX that is an IP address, and an MX host without an address.
var diagBrokenZone = []string{
	"--mx-host=example.test,mail.example.test,10",
	"--address=/mail.example.test/" + diagBox,
	"--ptr-record=1.111.77.10.in-addr.arpa,host1.isp.test",
	"--mx-host=iplit.test," + diagBox + ",10",
	"--mx-host=noaddr.test,mx.noaddr.test,10",
	"--txt-record=mx.noaddr.test,no address here",
	// Problems the acceptance does not ask for, named as well: an MX
	// pointing at an alias, a null MX, no MX at all.
	"--mx-host=cnamemx.test,alias.cnamemx.test,10",
	"--cname=alias.cnamemx.test,mail.example.test",
	"--dns-rr=nullmx.test,15,000000",
	"--txt-record=nomx.test,no mail records",
}

// Issue 11, acceptance 4: with dnsmasq serving a consistent zone every
// check passes, in the page (a browser-like client logged in through the
// page on an office PC) and in "concierge check dns"; with a wrong PTR,
// an IP-address MX, an MX host without an A record and relay_networks
// that take in the Internet side (an open relay), each problem is named
// in words in both.
func TestDiagnosticsAgainstDnsmasq(t *testing.T) {
	testnet.Require(t, "/usr/sbin/dnsmasq", "ss")
	lan := testnet.NewLAN(t, diagNet+".0/24")
	boxH, dnsH, pc := lan.AddHost("box", 1), lan.AddHost("dns", 53), lan.AddHost("pc", 10)
	dns := dnsH.StartDNS("test", diagZone...)
	boxH.SetResolver(diagDNS)
	b := testnet.NewBox(t, boxH)
	b.CLI("domain", "add", "example.test")
	b.CLI("relay", "add", "10.77.112.0/24") // the office LAN, elsewhere
	b.CLI("config", "set", "diag.public_address", diagBox)
	b.CLI("config", "set", "web.http_listen", diagBox+":80")
	b.CLI("config", "set", "web.https_listen", "")
	b.CLIInput(diagAdmin+"\n", "admin", "passwd")
	b.Start(80)

	web := newPageClient(t, pc, "http://"+diagBox)
	web.login(diagAdmin)

	// Everything agrees.
	out := b.CLI("check", "dns")
	if !strings.Contains(out, "7 checks: 7 ok, 0 warnings, 0 failed") {
		t.Errorf("concierge check dns on a consistent zone:\n%s", out)
	}
	rows := web.runChecks()
	if len(rows) != 7 {
		t.Errorf("the page shows %d checks, want 7:\n%s", len(rows), strings.Join(rows, "\n"))
	}
	for _, r := range rows {
		if !strings.HasPrefix(r, "ok") {
			t.Errorf("a check did not pass in the page: %s", r)
		}
	}
	for _, want := range []string{
		"The MX of example.test is mail.example.test (preference 10).",
		"The MX of example.test points to mail.example.test, which resolves to " + diagBox + ": this box's public address.",
		"The reverse DNS of " + diagBox + " is mail.example.test, the name in the SMTP banner",
		"Port 25 of " + diagBox + " answers with the banner \"220 mail.example.test",
		"The box refused to relay for a stranger: asked from " + diagBox,
	} {
		if !containsRow(rows, want) {
			t.Errorf("the page does not say %q:\n%s", want, strings.Join(rows, "\n"))
		}
	}

	t.Logf("consistent zone:\n%s", out)

	// Break it.
	dns.Signal(15)
	if !dns.Wait(10 * time.Second) {
		t.Fatal("dnsmasq did not stop")
	}
	dnsH.StartDNS("test", diagBrokenZone...)
	b.CLI("domain", "add", "iplit.test")
	b.CLI("domain", "add", "noaddr.test")
	for _, d := range []string{"cnamemx.test", "nullmx.test", "nomx.test"} {
		b.CLI("domain", "add", d)
	}
	b.CLI("relay", "add", diagNet+".0/24")
	problems := []string{
		"The reverse DNS of " + diagBox + " is host1.isp.test, but the banner says mail.example.test",
		"The MX of iplit.test is the IP address " + diagBox + ", not a host name",
		"The MX of noaddr.test points to mx.noaddr.test, which has no address (A or AAAA) record",
		"The box relays for strangers: asked from " + diagBox,
		"relay_networks has " + diagNet + ".0/24",
	}
	out, err := b.CLITry("", "check", "dns")
	if err == nil {
		t.Errorf("concierge check dns succeeded with failing checks:\n%s", out)
	}
	for _, want := range problems {
		if !strings.Contains(out, want) {
			t.Errorf("concierge check dns does not say %q:\n%s", want, out)
		}
	}
	rows = web.runChecks()
	for _, want := range problems {
		if !containsRow(rows, "failed", want) {
			t.Errorf("the page does not fail a check saying %q:\n%s", want, strings.Join(rows, "\n"))
		}
	}
	for _, want := range [][]string{
		{"warning", "The MX of cnamemx.test points to alias.cnamemx.test, which is an alias (CNAME) of mail.example.test"},
		{"failed", "nullmx.test has a null MX (RFC 7505)"},
		{"warning", "nomx.test has no MX record", "implicit MX"},
	} {
		if !containsRow(rows, want...) {
			t.Errorf("the page does not say %q:\n%s", want, strings.Join(rows, "\n"))
		}
	}
	t.Logf("broken zone:\n%s", out)

	// The relay test stopped before DATA: nothing was queued.
	if q := b.CLI("queue", "list"); !strings.Contains(q, "empty") {
		t.Errorf("the relay test left mail in the queue:\n%s", q)
	}
}

func containsRow(rows []string, want ...string) bool {
	for _, r := range rows {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(r, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// pageClient is a browser on a LAN host: cookies, no automatic
// redirects, its connections opened in the host's namespace.
type pageClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newPageClient(t *testing.T, h *testnet.Host, base string) *pageClient {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := h.InNS(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &pageClient{t: t, base: base, hc: &http.Client{Transport: tr, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the status, the redirect and the parsed
// page.
func (c *pageClient) do(method, path string, form url.Values) (int, string, *html.Node) {
	c.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.base)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	doc, err := html.Parse(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res.StatusCode, res.Header.Get("Location"), doc
}

// formValues returns the hidden and filled-in fields of form id.
func formValues(doc *html.Node, id string) url.Values {
	var v url.Values
	visit(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "form" && attrOf(n, "id") == id {
			v = url.Values{}
			visit(n, func(in *html.Node) {
				if in.Type == html.ElementNode && in.Data == "input" {
					v.Add(attrOf(in, "name"), attrOf(in, "value"))
				}
			})
		}
	})
	return v
}

// submit loads page and posts its form id with fields.
func (c *pageClient) submit(page, id string, fields map[string]string) (int, string) {
	c.t.Helper()
	_, _, doc := c.do(http.MethodGet, page, nil)
	v := formValues(doc, id)
	if v == nil {
		c.t.Fatalf("%s has no form %s", page, id)
	}
	for k, f := range fields {
		v.Set(k, f)
	}
	var action string
	visit(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "form" && attrOf(n, "id") == id {
			action = attrOf(n, "action")
		}
	})
	status, loc, _ := c.do(http.MethodPost, action, v)
	return status, loc
}

func (c *pageClient) login(password string) {
	c.t.Helper()
	if status, loc := c.submit("/login", "login", map[string]string{"password": password}); status != http.StatusSeeOther || loc != "/" {
		c.t.Fatalf("login: %d %s", status, loc)
	}
}

// runChecks presses "Run checks" and returns the rows of the table
// #checks that follows, one string each (the cells joined by " | ").
func (c *pageClient) runChecks() []string {
	c.t.Helper()
	if status, loc := c.submit("/diagnostics", "diag-run", nil); status != http.StatusSeeOther || loc != "/diagnostics" {
		c.t.Fatalf("run checks: %d %s", status, loc)
	}
	_, _, doc := c.do(http.MethodGet, "/diagnostics", nil)
	var rows []string
	visit(doc, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "table" || attrOf(n, "id") != "checks" {
			return
		}
		visit(n, func(tr *html.Node) {
			if tr.Type != html.ElementNode || tr.Data != "tr" || tr.Parent.Data != "tbody" {
				return
			}
			var cells []string
			for td := tr.FirstChild; td != nil; td = td.NextSibling {
				if td.Type == html.ElementNode && td.Data == "td" {
					cells = append(cells, textOf(td))
				}
			}
			rows = append(rows, strings.Join(cells, " | "))
		})
	})
	return rows
}

func visit(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		visit(c, fn)
	}
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	var b strings.Builder
	visit(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return strings.TrimSpace(b.String())
}

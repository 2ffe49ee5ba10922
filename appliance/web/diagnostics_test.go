package web

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"concierge/appliance/control"
)

// serveZone runs a DNS server on loopback that answers from records in
// zone-file syntax (NXDOMAIN for names it has none of) and returns its
// address.
func serveZone(t *testing.T, lines ...string) string {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		exists := false
		for _, rr := range rrs {
			if strings.EqualFold(rr.Header().Name, q.Question[0].Name) {
				exists = true
				if rr.Header().Rrtype == q.Question[0].Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// The diagnostics page runs the checks from its form and shows each in
// the table #checks, in words; without a server, port 25 and relaying
// say they were not tested.
func TestDiagnosticsPage(t *testing.T) {
	b := newTestBox(t, true)
	dnsAddr := serveZone(t,
		"example.test. 60 IN MX 10 203.0.113.7.",
		"mail.example.test. 60 IN A 203.0.113.5",
		"5.113.0.203.in-addr.arpa. 60 IN PTR host5.isp.test.",
	)
	b.call(control.OpConfigSet, control.Args{"key": "delivery.dns_servers", "value": dnsAddr}, nil)
	b.call(control.OpConfigSet, control.Args{"key": "diag.public_address", "value": "203.0.113.5"}, nil)
	c := b.client()
	c.mustLogin()

	r := c.get("/diagnostics")
	if r.status != http.StatusOK || !strings.Contains(r.body, "No checks have run") {
		t.Fatalf("GET /diagnostics before a run: %d\n%s", r.status, r.body)
	}
	if !strings.Contains(r.body, `href="/diagnostics"`) {
		t.Error("the navigation has no link to /diagnostics")
	}
	res := c.submit("/diagnostics", "diag-run", nil)
	if res.status != http.StatusSeeOther || res.location() != "/diagnostics" {
		t.Fatalf("run checks: %d %s %q", res.status, res.location(), res.byClass("error"))
	}
	r = c.get("/diagnostics")
	if n := r.byClass("notice"); !strings.Contains(n, "Checks done") {
		t.Errorf("notice %q", n)
	}
	rows := strings.Join(r.tableRows("checks"), "\n")
	for _, want := range []string{
		"MX records", "The MX of example.test is the IP address 203.0.113.7, not a host name",
		"Reverse DNS", "The reverse DNS of 203.0.113.5 is host5.isp.test, but the banner says mail.example.test",
		"Banner name", "The banner name mail.example.test resolves to 203.0.113.5, this box's public address",
		"Port 25", "The mail server is not running, so port 25 was not tested",
		"Relaying", "not running",
	} {
		if !strings.Contains(rows, want) {
			t.Errorf("the checks table lacks %q:\n%s", want, rows)
		}
	}
}

package diag

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"concierge/smtpd/deliver"
)

// zone is a resolver over records in zone-file syntax that answers as a
// recursive server does: aliases are followed, names that have no record
// at all do not exist (NXDOMAIN).
type zone struct {
	rrs  []dns.RR
	fail map[string]bool // names whose queries fail (SERVFAIL)
}

func newZone(t *testing.T, lines ...string) *zone {
	t.Helper()
	z := &zone{fail: map[string]bool{}}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		z.rrs = append(z.rrs, rr)
	}
	return z
}

func (z *zone) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	name = dns.Fqdn(strings.ToLower(name))
	if z.fail[name] {
		return nil, errors.New("SERVFAIL")
	}
	m := new(dns.Msg)
	exists := false
	for range maxCNAME {
		var alias string
		for _, rr := range z.rrs {
			if !strings.EqualFold(rr.Header().Name, name) {
				continue
			}
			exists = true
			if rr.Header().Rrtype == qtype {
				m.Answer = append(m.Answer, rr)
			} else if c, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, rr)
				alias = c.Target
			}
		}
		if alias == "" {
			break
		}
		name = alias
	}
	if !exists {
		return m, deliver.ErrNXDomain
	}
	return m, nil
}

// prober answers like the box's own SMTP server.
type prober struct {
	greeting string
	relays   bool // it takes the relay test's recipient
	asked    []string
}

func (p *prober) Banner(ctx context.Context, addr netip.AddrPort) (string, error) {
	p.asked = append(p.asked, "banner "+addr.String())
	if p.greeting == "" {
		return "", errors.New("connection refused")
	}
	return p.greeting, nil
}

func (p *prober) Relay(ctx context.Context, src netip.Addr, dst netip.AddrPort, helo, rcpt string) (string, bool, error) {
	p.asked = append(p.asked, fmt.Sprintf("relay %s->%s", src, dst))
	if p.relays {
		return "250 2.1.5 Ok", true, nil
	}
	return "554 5.7.1 Relaying denied", false, nil
}

const (
	pub  = "203.0.113.5"
	host = "mail.example.com"
)

// consistent is a zone in which everything agrees.
var consistent = []string{
	"example.com. 300 IN MX 10 mail.example.com.",
	"mail.example.com. 300 IN A " + pub,
	"5.113.0.203.in-addr.arpa. 300 IN PTR mail.example.com.",
}

func params() Params {
	return Params{
		Domains:       []string{"example.com"},
		Hostname:      host,
		Public:        netip.MustParseAddr(pub),
		PublicFrom:    "diag.public_address",
		Local:         []netip.Addr{netip.MustParseAddr(pub), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("127.0.0.1")},
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		MXListen:      ":25",
		Running:       true,
	}
}

func runWith(t *testing.T, p Params, pr *prober, lines ...string) *Report {
	t.Helper()
	return Run(context.Background(), p, newZone(t, lines...), pr)
}

// find returns the checks of kind whose message holds every want.
func find(r *Report, kind string, s Status, want ...string) bool {
	for _, c := range r.Checks {
		if c.Kind != kind || c.Status != s {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(c.Message, w)
		}
		if ok {
			return true
		}
	}
	return false
}

func dump(r *Report) string {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "  %s %s [%s] %s\n", c.Status, c.Kind, c.Subject, c.Message)
	}
	return b.String()
}

func TestConsistentZonePasses(t *testing.T) {
	pr := &prober{greeting: "220 mail.example.com ESMTP Service Ready"}
	r := runWith(t, params(), pr, consistent...)
	if r.Count(Warn)+r.Count(Fail) > 0 {
		t.Errorf("a consistent zone: %s\n%s", r.Summary(), dump(r))
	}
	for _, k := range []string{KindPublic, KindPort25, KindMX, KindMXHost, KindPTR, KindBanner, KindRelay} {
		if !find(r, k, OK) {
			t.Errorf("no passing %s check:\n%s", k, dump(r))
		}
	}
	// The relay test speaks from the public address (the Internet side)
	// to the port 25 listener.
	if want := "relay 203.0.113.5->203.0.113.5:25"; !strings.Contains(strings.Join(pr.asked, ";"), want) {
		t.Errorf("probes %v, want %s", pr.asked, want)
	}
}

// Each problem is named in plain words.
func TestProblemsNamed(t *testing.T) {
	greeting := &prober{greeting: "220 mail.example.com ESMTP"}
	for _, tc := range []struct {
		name   string
		zone   []string
		params func(*Params)
		prober *prober
		kind   string
		status Status
		want   []string
	}{
		{"wrong PTR", []string{consistent[0], consistent[1], "5.113.0.203.in-addr.arpa. 300 IN PTR host5.isp.net."}, nil, greeting,
			KindPTR, Fail, []string{"reverse DNS of 203.0.113.5 is host5.isp.net, but the banner says mail.example.com"}},
		{"no PTR", consistent[:2], nil, greeting,
			KindPTR, Fail, []string{"203.0.113.5 has no reverse DNS (PTR) name"}},
		{"PTR not confirmed", []string{consistent[0], "mail.example.com. 300 IN A 198.51.100.9", consistent[2]}, nil, greeting,
			KindPTR, Fail, []string{"mail.example.com resolves to 198.51.100.9, not back to 203.0.113.5"}},
		{"MX elsewhere", []string{consistent[0], "mail.example.com. 300 IN A 198.51.100.9", consistent[2]}, nil, greeting,
			KindMXHost, Fail, []string{"MX of example.com points to mail.example.com, which resolves to 198.51.100.9, but this box's public address is 203.0.113.5"}},
		{"IP address MX", []string{"example.com. 300 IN MX 10 203.0.113.5.", consistent[1], consistent[2]}, nil, greeting,
			KindMX, Fail, []string{"The MX of example.com is the IP address 203.0.113.5, not a host name"}},
		{"CNAME MX", []string{"example.com. 300 IN MX 10 mx.example.com.", "mx.example.com. 300 IN CNAME mail.example.com.", consistent[1], consistent[2]}, nil, greeting,
			KindMXHost, Warn, []string{"points to mx.example.com, which is an alias (CNAME) of mail.example.com"}},
		{"missing A", []string{"example.com. 300 IN MX 10 mx.example.com.", "mx.example.com. 300 IN TXT \"no address\"", consistent[1], consistent[2]}, nil, greeting,
			KindMXHost, Fail, []string{"points to mx.example.com, which has no address (A or AAAA) record"}},
		{"MX host does not exist", []string{"example.com. 300 IN MX 10 mx.example.com.", consistent[1], consistent[2]}, nil, greeting,
			KindMXHost, Fail, []string{"points to mx.example.com, which does not exist in DNS"}},
		{"null MX", []string{"example.com. 300 IN MX 0 .", consistent[1], consistent[2]}, nil, greeting,
			KindMX, Fail, []string{"example.com has a null MX (RFC 7505)"}},
		{"no MX", []string{"example.com. 300 IN A " + pub, consistent[1], consistent[2]}, nil, greeting,
			KindMX, Warn, []string{"example.com has no MX record", "implicit MX"}},
		{"no MX, address elsewhere", []string{"example.com. 300 IN A 198.51.100.9", consistent[1], consistent[2]}, nil, greeting,
			KindMXHost, Fail, []string{"The implicit MX of example.com is example.com itself, which resolves to 198.51.100.9"}},
		{"domain does not exist", consistent[1:], nil, greeting,
			KindMX, Fail, []string{"example.com does not exist in DNS"}},
		{"open relay", consistent, func(p *Params) {
			p.RelayNetworks = append(p.RelayNetworks, netip.MustParsePrefix("203.0.113.0/24"))
		}, &prober{greeting: "220 mail.example.com ESMTP", relays: true},
			KindRelay, Fail, []string{"The box relays for strangers", "relay_networks has 203.0.113.0/24"}},
		{"banner name differs", consistent, nil, &prober{greeting: "220 other.example.net ESMTP"},
			KindBanner, Warn, []string{"The SMTP banner says other.example.net, but the box's name (hostname) is mail.example.com"}},
		{"port 25 closed", consistent, nil, &prober{},
			KindPort25, Fail, []string{"Nothing answers on port 25 of 203.0.113.5"}},
		{"behind a router", consistent, func(p *Params) { p.Local = p.Local[1:] }, greeting,
			KindPort25, Warn, []string{"is not an address of this box", "cannot be tested from inside"}},
		{"public address unknown", consistent, func(p *Params) { p.Public = netip.Addr{}; p.PublicNote = "The address ... is private." }, greeting,
			KindPublic, Warn, []string{"is private", "set diag.public_address"}},
		{"port 25 off", consistent, func(p *Params) { p.MXListen = "" }, greeting,
			KindPort25, Fail, []string{"Port 25 is turned off"}},
		{"server stopped", consistent, func(p *Params) { p.Running = false }, greeting,
			KindRelay, Warn, []string{"not running"}},
		{"every address trusted", consistent, func(p *Params) {
			p.Local = p.Local[1:]
			p.RelayNetworks = append(p.RelayNetworks, netip.MustParsePrefix("127.0.0.0/8"))
		}, greeting,
			KindRelay, Warn, []string{"every address of the box is in relay_networks"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := params()
			if tc.params != nil {
				tc.params(&p)
			}
			r := runWith(t, p, tc.prober, tc.zone...)
			if !find(r, tc.kind, tc.status, tc.want...) {
				t.Errorf("no %s %s check saying %q:\n%s", tc.status, tc.kind, tc.want, dump(r))
			}
		})
	}
}

// A DNS failure is a failure of the check, in words, never a pass.
func TestDNSFailure(t *testing.T) {
	z := newZone(t, consistent...)
	z.fail["example.com."] = true
	r := Run(context.Background(), params(), z, &prober{greeting: "220 mail.example.com"})
	if !find(r, KindMX, Fail, "could not be looked up", "SERVFAIL") {
		t.Errorf("a failing MX lookup:\n%s", dump(r))
	}
}

// Behind NAT the relay test speaks from an address outside the relay
// networks, loopback last.
func TestRelayTestSource(t *testing.T) {
	p := params()
	p.Local = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.9.0.2")}
	pr := &prober{greeting: "220 mail.example.com"}
	runWith(t, p, pr, consistent...)
	if want := "relay 10.9.0.2->127.0.0.1:25"; !strings.Contains(strings.Join(pr.asked, ";"), want) {
		t.Errorf("probes %v, want %s", pr.asked, want)
	}
	p.MXListen = "10.0.0.2:25"
	pr = &prober{greeting: "220 mail.example.com"}
	runWith(t, p, pr, consistent...)
	if want := "relay 10.9.0.2->10.0.0.2:25"; !strings.Contains(strings.Join(pr.asked, ";"), want) {
		t.Errorf("probes %v, want %s", pr.asked, want)
	}
}

func TestBannerName(t *testing.T) {
	for line, want := range map[string]string{
		"220 mail.example.com ESMTP Service Ready": "mail.example.com",
		"220-Mail.Example.COM. hello":              "mail.example.com",
		"220 x":                                    "x",
		"220":                                      "",
		"554 no service":                           "",
		"2200 x":                                   "",
		"":                                         "",
	} {
		got, ok := BannerName(line)
		if got != want || ok != (want != "") {
			t.Errorf("BannerName(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

// The greeting comes from the network.
func FuzzBannerName(f *testing.F) {
	f.Add("220 mail.example.com ESMTP")
	f.Add("220-")
	f.Add("220 \t ")
	f.Fuzz(func(t *testing.T, line string) {
		name, ok := BannerName(line)
		if ok && (name == "" || strings.ContainsAny(name, " \t\r\n") || !strings.HasPrefix(line, "220")) {
			t.Errorf("BannerName(%q) = %q", line, name)
		}
	})
}

// A box that relays for an address in no relay network is an open relay.
func TestOpenRelayOutsideRelayNetworks(t *testing.T) {
	r := runWith(t, params(), &prober{greeting: "220 mail.example.com", relays: true}, consistent...)
	if !find(r, KindRelay, Fail, "which is in no relay network", "it is an open relay") {
		t.Errorf("an open relay:\n%s", dump(r))
	}
}

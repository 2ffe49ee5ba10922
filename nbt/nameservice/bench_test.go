package nameservice

import (
	"net/netip"
	"testing"

	"concierge/nbt/wire"
)

// queryFixture is a server whose names are claimed, a link, a unicast
// query for one of its names and the query's source.
func queryFixture(cfg Config) (*Server, *link, []byte, netip.AddrPort) {
	cfg.Name, cfg.Workgroup, cfg.WINS = "CONCIERGE", "WORKGROUP", true
	s, _ := New(cfg)
	for _, o := range s.ownList() {
		o.state.Store(stateActive)
	}
	l := &link{ifc: Interface{Addr: netip.MustParseAddr("10.0.0.1"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, port: 137}
	msg, _ := wire.NewQuery(1, wire.MustName("CONCIERGE", 0x20, ""), false, true).Pack()
	return s, l, msg, netip.MustParseAddrPort("10.0.0.2:5000")
}

// BenchmarkHandleQuery measures the work per unicast query without I/O.
func BenchmarkHandleQuery(b *testing.B) {
	s, l, msg, src := queryFixture(Config{RateLimit: -1})
	n := 0
	out := func(b []byte) error { n += len(b); return nil }
	b.ReportAllocs()
	for b.Loop() {
		s.handle(l, src, false, msg, s.cfg.now(), out, out)
	}
	if n == 0 {
		b.Fatal("no answer")
	}
}

// FuzzHandle feeds arbitrary datagrams to the live request path: nothing
// panics, anything the server answers is well formed, and a datagram that
// does not parse is never answered.
func FuzzHandle(f *testing.F) {
	lan := netip.MustParseAddr("10.0.0.2")
	for _, p := range []*wire.Packet{
		wire.NewQuery(1, wire.MustName("CONCIERGE", 0x20, ""), false, true),
		wire.NewQuery(2, wire.MustName("PC", 0x20, ""), true, false),
		wire.NewNodeStatusRequest(3, wire.Wildcard),
		wire.NewRegistration(4, wire.MustName("PC", 0x20, ""), 300, wire.NB{Addr: lan}, false),
		wire.NewRegistration(5, wire.MustName("CONCIERGE", 0x20, ""), 300, wire.NB{Addr: lan}, true),
		wire.NewRefresh(6, wire.MustName("PC", 0x20, ""), 300, wire.NB{Addr: lan}),
		wire.NewRelease(7, wire.MustName("PC", 0x20, ""), wire.NB{Addr: lan}, false),
		wire.NewConflictDemand(8, wire.MustName("CONCIERGE", 0x00, ""), wire.NB{Addr: lan}),
	} {
		b, _ := p.Pack()
		f.Add(b)
	}
	s, _ := New(Config{Name: "CONCIERGE", Workgroup: "WORKGROUP", WINS: true, RateLimit: -1, ChallengeTries: 1})
	for _, o := range s.ownList() {
		o.state.Store(stateActive)
	}
	l := &link{ifc: Interface{Addr: netip.MustParseAddr("10.0.0.1"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, port: 137}
	src := netip.AddrPortFrom(lan, 137)
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, o := range s.ownList() {
			o.state.Store(stateActive)
		}
		_, perr := wire.Parse(msg)
		out := func(b []byte) error {
			if perr != nil {
				t.Fatalf("answered a datagram that does not parse (%v)", perr)
			}
			if _, err := wire.Parse(b); err != nil {
				t.Fatalf("malformed answer: %v", err)
			}
			return nil
		}
		s.handle(l, src, false, msg, s.cfg.now(), out, func([]byte) error { return nil })
		s.handle(l, src, true, msg, s.cfg.now(), out, func([]byte) error { return nil })
	})
}

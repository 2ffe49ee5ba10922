package nameservice

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"concierge/nbt/wire"
)

// startLocal runs a server on a loopback socket as interface "lo" with
// the subnet 127.0.0.0/8.
func startLocal(t *testing.T, cfg Config) (*Server, netip.AddrPort) {
	t.Helper()
	return startLocalLAN(t, cfg, "127.0.0.0/8")
}

func startLocalLAN(t *testing.T, cfg Config, lan string) (*Server, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name, cfg.Workgroup = "CONCIERGE", "WORKGROUP"
	}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.NoTCP = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ifc := Interface{Name: "lo", Addr: netip.MustParseAddr("127.0.0.1"), Prefixes: []netip.Prefix{netip.MustParsePrefix(lan)},
		Broadcast: netip.MustParseAddr("127.255.255.255"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	if err := s.Serve(pc, ifc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	select {
	case <-s.Claimed():
	case <-time.After(3 * time.Second):
		t.Fatal("names not claimed")
	}
	return s, udpAddrPort(pc.LocalAddr())
}

type client struct {
	t  *testing.T
	pc net.PacketConn
	to netip.AddrPort
}

func newClient(t *testing.T, from string, to netip.AddrPort) *client {
	t.Helper()
	pc, err := net.ListenPacket("udp4", from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &client{t, pc, to}
}

func (c *client) send(p *wire.Packet) {
	c.t.Helper()
	b, err := p.Pack()
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	if _, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(c.to)); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next packet or nil after d.
func (c *client) recv(d time.Duration) *wire.Packet {
	c.t.Helper()
	buf := make([]byte, 2000)
	c.pc.SetReadDeadline(time.Now().Add(d))
	n, _, err := c.pc.ReadFrom(buf)
	if err != nil {
		return nil
	}
	p, err := wire.Parse(buf[:n])
	if err != nil {
		c.t.Fatalf("server sent a malformed packet: %v", err)
	}
	return p
}

func (c *client) roundTrip(p *wire.Packet) *wire.Packet {
	c.t.Helper()
	c.send(p)
	r := c.recv(2 * time.Second)
	if r == nil {
		c.t.Fatalf("no answer to %s", p)
	}
	if r.ID != p.ID {
		c.t.Fatalf("answer id %#x to request %#x", r.ID, p.ID)
	}
	return r
}

func addrs(t *testing.T, p *wire.Packet) []string {
	t.Helper()
	es, err := wire.ParseNB(p.Answers[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		s := e.Addr.String()
		if e.Group() {
			s += "/g"
		}
		out = append(out, s)
	}
	return out
}

var lo = netip.MustParseAddr("127.0.0.1")

func TestQueryOwnNames(t *testing.T) {
	_, srv := startLocal(t, Config{WINS: true})
	c := newClient(t, "127.0.0.1:0", srv)
	for _, tc := range []struct {
		base   string
		suffix byte
		want   string
	}{{"CONCIERGE", 0x20, "127.0.0.1"}, {"concierge", 0x00, "127.0.0.1"}, {"CONCIERGE", 0x03, "127.0.0.1"}, {"WORKGROUP", 0x1e, "127.0.0.1/g"}} {
		r := c.roundTrip(wire.NewQuery(7, wire.MustName(tc.base, tc.suffix, ""), false, true))
		if r.Kind() != wire.KindPositiveQuery || addrs(t, r)[0] != tc.want {
			t.Errorf("%s<%02x>: %s %v", tc.base, tc.suffix, r, addrs(t, r))
		}
	}
	r := c.roundTrip(wire.NewQuery(8, wire.MustName("NOBODY", 0x20, ""), false, true))
	if r.Kind() != wire.KindNegativeQuery || r.Rcode != wire.RcodeNamErr {
		t.Errorf("unknown name: %s", r)
	}
	// Broadcast queries for unknown names are never answered.
	c.send(wire.NewQuery(9, wire.MustName("NOBODY", 0x20, ""), true, false))
	if r := c.recv(300 * time.Millisecond); r != nil {
		t.Errorf("answer to a broadcast query for an unknown name: %s", r)
	}
	// A different scope is a different name.
	r = c.roundTrip(wire.NewQuery(10, wire.MustName("CONCIERGE", 0x20, "OTHER.SCOPE"), false, true))
	if r.Kind() != wire.KindNegativeQuery {
		t.Errorf("other scope: %s", r)
	}
}

func TestNodeStatus(t *testing.T) {
	_, srv := startLocal(t, Config{})
	c := newClient(t, "127.0.0.1:0", srv)
	r := c.roundTrip(wire.NewNodeStatusRequest(3, wire.Wildcard))
	if r.Kind() != wire.KindNodeStatusResponse {
		t.Fatalf("%s", r)
	}
	st, _ := wire.ParseNodeStatus(r.Answers[0].Data)
	if len(st.Names) != 5 || !bytes.Equal(st.Stats.UnitID[:], []byte{2, 0, 0, 0, 0, 9}) {
		t.Fatalf("%+v", st)
	}
	for _, n := range st.Names {
		group := n.Flags&wire.NBGroup != 0
		if wantGroup := n.String()[:9] == "WORKGROUP"; group != wantGroup || n.Flags&wire.NameACT == 0 {
			t.Errorf("%s flags %#x", n, n.Flags)
		}
	}
}

func TestWINSRegisterQueryRelease(t *testing.T) {
	s, srv := startLocal(t, Config{WINS: true, WINSMinTTL: time.Second, WINSMaxTTL: 2 * time.Second})
	c := newClient(t, "127.0.0.1:0", srv)
	pc := wire.MustName("PC1", 0x20, "")
	r := c.roundTrip(wire.NewRegistration(1, pc, 300, wire.NB{Addr: lo}, false))
	if r.Kind() != wire.KindPositiveRegistration || r.Answers[0].TTL != 2 {
		t.Fatalf("registration: %s ttl %d", r, r.Answers[0].TTL)
	}
	r = c.roundTrip(wire.NewQuery(2, pc, false, true))
	if r.Kind() != wire.KindPositiveQuery || addrs(t, r)[0] != "127.0.0.1" {
		t.Fatalf("query: %s", r)
	}
	// Registering from another address than the one in the record is
	// refused.
	r = c.roundTrip(wire.NewRegistration(3, pc, 300, wire.NB{Addr: netip.MustParseAddr("127.0.0.9")}, false))
	if r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeRfsErr {
		t.Fatalf("spoofed registration: %s", r)
	}
	// Registering one of the box's names is refused.
	r = c.roundTrip(wire.NewRegistration(4, wire.MustName("CONCIERGE", 0x20, ""), 300, wire.NB{Addr: lo}, false))
	if r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeActErr {
		t.Fatalf("registration of our name: %s", r)
	}
	// Group members are all answered, with the box for its workgroup.
	for i, a := range []string{"127.0.0.1"} {
		r = c.roundTrip(wire.NewRegistration(uint16(10+i), wire.MustName("WORKGROUP", 0, ""), 300, wire.NB{Flags: wire.NBGroup, Addr: netip.MustParseAddr(a)}, false))
		if r.Kind() != wire.KindPositiveRegistration {
			t.Fatalf("group registration: %s", r)
		}
	}
	r = c.roundTrip(wire.NewQuery(20, wire.MustName("WORKGROUP", 0, ""), false, true))
	if got := addrs(t, r); len(got) != 1 || got[0] != "127.0.0.1/g" {
		t.Errorf("group members: %v", got)
	}
	r = c.roundTrip(wire.NewRelease(21, pc, wire.NB{Addr: lo}, false))
	if r.Kind() != wire.KindPositiveRelease {
		t.Fatalf("release: %s", r)
	}
	r = c.roundTrip(wire.NewQuery(22, pc, false, true))
	if r.Kind() != wire.KindNegativeQuery {
		t.Fatalf("after release: %s", r)
	}
	// TTL expiry.
	c.roundTrip(wire.NewRegistration(23, pc, 1, wire.NB{Addr: lo}, false))
	time.Sleep(1200 * time.Millisecond)
	r = c.roundTrip(wire.NewQuery(24, pc, false, true))
	if r.Kind() != wire.KindNegativeQuery {
		t.Fatalf("after the TTL: %s", r)
	}
	if st := s.Status(); st.Counters["rx registration-request"] == 0 || st.Counters["tx rcode 6 (ACT_ERR)"] == 0 {
		t.Errorf("counters: %v", st.Counters)
	}
}

func TestChallenge(t *testing.T) {
	_, srv := startLocal(t, Config{WINS: true, ChallengeTimeout: 300 * time.Millisecond})
	owner := netip.MustParseAddr("127.0.0.2")
	// The owner listens on the NBNS port of its own address.
	oc := newClient(t, netip.AddrPortFrom(owner, srv.Port()).String(), srv)
	n := wire.MustName("PC2", 0x20, "")
	if r := oc.roundTrip(wire.NewRegistration(1, n, 300, wire.NB{Addr: owner}, false)); r.Kind() != wire.KindPositiveRegistration {
		t.Fatalf("owner registration: %s", r)
	}
	c := newClient(t, "127.0.0.1:0", srv)
	// Live owner: WACK, challenge, refusal.
	c.send(wire.NewRegistration(2, n, 300, wire.NB{Addr: lo}, false))
	if r := c.recv(time.Second); r == nil || r.Kind() != wire.KindWACK {
		t.Fatalf("want WACK, got %v", r)
	}
	q := oc.recv(time.Second)
	if q == nil || q.Kind() != wire.KindQueryRequest || !q.Questions[0].Name.Equal(n) || q.Has(wire.FlagRD) {
		t.Fatalf("want a challenge query, got %v", q)
	}
	oc.send(wire.NewPositiveQuery(q, 300, false, wire.NB{Addr: owner}))
	if r := c.recv(2 * time.Second); r == nil || r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeActErr {
		t.Fatalf("want refusal, got %v", r)
	}
	// Dead owner: WACK, two unanswered challenges, success.
	c.send(wire.NewRegistration(3, n, 300, wire.NB{Addr: lo}, false))
	if r := c.recv(time.Second); r == nil || r.Kind() != wire.KindWACK {
		t.Fatalf("want WACK, got %v", r)
	}
	if r := c.recv(3 * time.Second); r == nil || r.Kind() != wire.KindPositiveRegistration {
		t.Fatalf("want registration, got %v", r)
	}
	if r := c.roundTrip(wire.NewQuery(4, n, false, true)); addrs(t, r)[0] != "127.0.0.1" {
		t.Fatalf("new owner: %v", addrs(t, r))
	}
}

func TestMalformedAndRemoteDropped(t *testing.T) {
	s, srv := startLocal(t, Config{WINS: true})
	c := newClient(t, "127.0.0.1:0", srv)
	q, _ := wire.NewQuery(1, wire.MustName("CONCIERGE", 0x20, ""), false, true).Pack()
	for _, b := range [][]byte{{1, 2, 3}, q[:20], append(append([]byte{}, q[:len(q)-1]...), 0xff)} {
		c.sendRaw(b)
	}
	resp, _ := wire.NewRegistrationResponse(wire.NewRegistration(5, wire.MustName("X", 0, ""), 1, wire.NB{Addr: lo}, false), 0, 1).Pack()
	c.sendRaw(resp) // an unsolicited response is not answered either
	if r := c.recv(300 * time.Millisecond); r != nil {
		t.Fatalf("answer to a malformed packet: %s", r)
	}
	if got := s.Status().Counters["dropped malformed"]; got != 3 {
		t.Errorf("malformed counter %d, want 3", got)
	}
	// Outside the LAN (AllowRemote off): a server whose LAN is 10/8.
	s, srv = startLocalLAN(t, Config{WINS: true}, "10.0.0.0/8")
	c = newClient(t, "127.0.0.1:0", srv)
	c.sendRaw(q)
	if r := c.recv(300 * time.Millisecond); r != nil {
		t.Fatalf("answer to a query from outside the LAN: %s", r)
	}
	if s.Status().Counters["dropped outside the LAN"] != 1 {
		t.Errorf("remote counter: %v", s.Status().Counters)
	}
}

func TestRateLimit(t *testing.T) {
	s, srv := startLocal(t, Config{RateLimit: 10, RateBurst: 10})
	c := newClient(t, "127.0.0.1:0", srv)
	for i := range 30 {
		c.send(wire.NewQuery(uint16(i), wire.MustName("CONCIERGE", 0x20, ""), false, false))
	}
	got := 0
	for c.recv(200*time.Millisecond) != nil {
		got++
	}
	if got < 10 || got > 13 {
		t.Errorf("%d answers to 30 queries with a burst of 10", got)
	}
	if s.Status().Counters["dropped rate limited"] == 0 {
		t.Error("no rate limit counted")
	}
}

func TestTablePersistsInBatches(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wins.json")
	s, srv := startLocal(t, Config{WINS: true, StateFile: file, SaveInterval: time.Hour})
	c := newClient(t, "127.0.0.1:0", srv)
	for i, n := range []string{"A", "B", "C"} {
		c.roundTrip(wire.NewRegistration(uint16(i), wire.MustName(n, 0x20, ""), 300, wire.NB{Addr: lo}, false))
	}
	time.Sleep(1500 * time.Millisecond) // a housekeeping round
	if _, err := os.Stat(file); err == nil {
		t.Fatal("table written before the save interval")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("table not written at shutdown: %v", err)
	}
	s2, srv2 := startLocal(t, Config{WINS: true, StateFile: file})
	c2 := newClient(t, "127.0.0.1:0", srv2)
	r := c2.roundTrip(wire.NewQuery(9, wire.MustName("B", 0x20, ""), false, true))
	if r.Kind() != wire.KindPositiveQuery {
		t.Fatalf("after restart: %s", r)
	}
	if len(s2.Status().Table) != 3 {
		t.Errorf("table: %+v", s2.Status().Table)
	}
}

func TestDefendAndConflictDemand(t *testing.T) {
	s, srv := startLocal(t, Config{})
	c := newClient(t, "127.0.0.1:0", srv)
	other := netip.MustParseAddr("127.0.0.3")
	r := c.roundTrip(wire.NewRegistration(1, wire.MustName("CONCIERGE", 0x20, ""), 300, wire.NB{Addr: other}, true))
	if r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeActErr {
		t.Fatalf("defence: %s", r)
	}
	// Group names are shared: a group registration is not answered.
	c.send(wire.NewRegistration(2, wire.MustName("WORKGROUP", 0, ""), 300, wire.NB{Flags: wire.NBGroup, Addr: other}, true))
	if r := c.recv(300 * time.Millisecond); r != nil {
		t.Fatalf("answer to a group registration: %s", r)
	}
	c.send(wire.NewConflictDemand(3, wire.MustName("CONCIERGE", 0x20, ""), wire.NB{Addr: other}))
	time.Sleep(100 * time.Millisecond)
	if st := s.Status().Names[2]; st.State != "conflict" {
		t.Fatalf("after a conflict demand: %+v", st)
	}
	c.send(wire.NewQuery(4, wire.MustName("CONCIERGE", 0x20, ""), true, false))
	if r := c.recv(300 * time.Millisecond); r != nil {
		t.Fatalf("answer for a name in conflict: %s", r)
	}
}

func TestUnreadableTableSetAside(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wins.json")
	os.WriteFile(file, []byte("{not json"), 0o600)
	s, err := New(Config{Name: "CONCIERGE", Workgroup: "WORKGROUP", WINS: true, StateFile: file})
	if err != nil {
		t.Fatalf("New with a corrupt table: %v", err)
	}
	s.Close()
	if _, err := os.Stat(file + ".bad"); err != nil {
		t.Errorf("corrupt table not set aside: %v", err)
	}
}

// While the box's names are being claimed, a unicast query for one of them
// gets no answer (not a negative one a client would cache); afterwards it
// gets the address.
func TestSilentWhileRegistering(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Name: "CONCIERGE", Workgroup: "WORKGROUP", WINS: true, NoTCP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ifc := Interface{Name: "lo", Addr: lo, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Broadcast: netip.MustParseAddr("127.255.255.255")}
	if err := s.Serve(pc, ifc); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, "127.0.0.1:0", udpAddrPort(pc.LocalAddr()))
	c.send(wire.NewQuery(1, wire.MustName("CONCIERGE", 0x20, ""), false, true))
	if r := c.recv(300 * time.Millisecond); r != nil {
		t.Fatalf("answer while registering: %s", r)
	}
	<-s.Claimed()
	if r := c.roundTrip(wire.NewQuery(2, wire.MustName("CONCIERGE", 0x20, ""), false, true)); r.Kind() != wire.KindPositiveQuery {
		t.Fatalf("after the claim: %s", r)
	}
}

package nameservice

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"concierge/internal/testnet"
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
	if cfg.Log == nil && testing.Verbose() {
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

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects a server's log for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds; it fails the test after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testnet.WaitFor(5*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
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

// barrierID is the transaction ID of the node status request noAnswer
// sends after the packet that must go unanswered.
const barrierID = 0xbeef

// noAnswer sends b, then a node status request, and fails unless the
// first answer is the node status response: the server handles one
// socket's datagrams in order, so it had its turn at b and said nothing.
func (c *client) noAnswer(b []byte, what string) {
	c.t.Helper()
	c.sendRaw(b)
	c.send(wire.NewNodeStatusRequest(barrierID, wire.Wildcard))
	r := c.recv(2 * time.Second)
	if r == nil {
		c.t.Fatalf("%s: no answer to the node status request after it", what)
	}
	if r.ID != barrierID || r.Kind() != wire.KindNodeStatusResponse {
		c.t.Fatalf("%s: answered with %s", what, r)
	}
}

func (c *client) noAnswerTo(p *wire.Packet, what string) {
	c.t.Helper()
	b, err := p.Pack()
	if err != nil {
		c.t.Fatal(err)
	}
	c.noAnswer(b, what)
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
	c.noAnswerTo(wire.NewQuery(9, wire.MustName("NOBODY", 0x20, ""), true, false), "broadcast query for an unknown name")
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
	clock := newFakeClock()
	s, srv := startLocal(t, Config{WINS: true, WINSMinTTL: time.Second, WINSMaxTTL: 2 * time.Second, now: clock.Now})
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
	clock.Add(999 * time.Millisecond)
	if r = c.roundTrip(wire.NewQuery(24, pc, false, true)); r.Kind() != wire.KindPositiveQuery {
		t.Fatalf("before the TTL: %s", r)
	}
	clock.Add(time.Millisecond)
	r = c.roundTrip(wire.NewQuery(25, pc, false, true))
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
	c.noAnswer(resp, "unsolicited response") // and the malformed ones before it
	if got := s.Status().Counters["dropped malformed"]; got != 3 {
		t.Errorf("malformed counter %d, want 3", got)
	}
	// Outside the LAN (AllowRemote off): a server whose LAN is 10/8.
	s, srv = startLocalLAN(t, Config{WINS: true}, "10.0.0.0/8")
	c = newClient(t, "127.0.0.1:0", srv)
	c.sendRaw(q)
	waitFor(t, "the query from outside the LAN to be dropped", func() bool { return s.Status().Counters["dropped outside the LAN"] == 1 })
	if r := c.recv(0); r != nil {
		t.Fatalf("answer to a query from outside the LAN: %s", r)
	}
}

func TestRateLimit(t *testing.T) {
	clock := newFakeClock()
	s, srv := startLocal(t, Config{RateLimit: 10, RateBurst: 10, now: clock.Now})
	c := newClient(t, "127.0.0.1:0", srv)
	for i := range 30 {
		c.send(wire.NewQuery(uint16(i), wire.MustName("CONCIERGE", 0x20, ""), false, false))
	}
	waitFor(t, "20 queries rate limited", func() bool { return s.Status().Counters["dropped rate limited"] == 20 })
	// A second later the bucket holds 10 again: the next query is
	// answered, after exactly the burst of the 30 before it.
	clock.Add(time.Second)
	c.send(wire.NewQuery(99, wire.MustName("CONCIERGE", 0x20, ""), false, false))
	got := 0
	for {
		r := c.recv(2 * time.Second)
		if r == nil {
			t.Fatal("no answer after the bucket refilled")
		}
		if r.ID == 99 {
			break
		}
		got++
	}
	if got != 10 {
		t.Errorf("%d answers to 30 queries with a burst of 10", got)
	}
}

func TestTablePersistsInBatches(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wins.json")
	clock := newFakeClock()
	s, srv := startLocal(t, Config{WINS: true, StateFile: file, SaveInterval: time.Hour, now: clock.Now})
	c := newClient(t, "127.0.0.1:0", srv)
	for i, n := range []string{"A", "B", "C"} {
		c.roundTrip(wire.NewRegistration(uint16(i), wire.MustName(n, 0x20, ""), 7200, wire.NB{Addr: lo}, false))
	}
	// What housekeeping does every second: nothing yet.
	clock.Add(59 * time.Minute)
	s.save(false)
	if _, err := os.Stat(file); err == nil {
		t.Fatal("table written before the save interval")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("table not written at shutdown: %v", err)
	}
	s2, srv2 := startLocal(t, Config{WINS: true, StateFile: file, now: clock.Now})
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
	c.noAnswerTo(wire.NewRegistration(2, wire.MustName("WORKGROUP", 0, ""), 300, wire.NB{Flags: wire.NBGroup, Addr: other}, true), "group registration")
	c.noAnswerTo(wire.NewConflictDemand(3, wire.MustName("CONCIERGE", 0x20, ""), wire.NB{Addr: other}), "conflict demand")
	if st := s.Status().Names[2]; st.State != "conflict" {
		t.Fatalf("after a conflict demand: %+v", st)
	}
	c.noAnswerTo(wire.NewQuery(4, wire.MustName("CONCIERGE", 0x20, ""), true, false), "broadcast query for a name in conflict")
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
	// Node status lists only claimed names, so the barrier is answered
	// while the claim runs (for 750ms).
	c.noAnswerTo(wire.NewQuery(1, wire.MustName("CONCIERGE", 0x20, ""), false, true), "query while registering")
	select {
	case <-s.Claimed():
		t.Fatal("claimed before the query was handled: the test proves nothing")
	default:
	}
	<-s.Claimed()
	if r := c.roundTrip(wire.NewQuery(2, wire.MustName("CONCIERGE", 0x20, ""), false, true)); r.Kind() != wire.KindPositiveQuery {
		t.Fatalf("after the claim: %s", r)
	}
}

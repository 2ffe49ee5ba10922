package nameservice

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"concierge/nbt/wire"
)

// One address may hold MaxNamesPerOwner names: the next new one is
// refused with RFS_ERR (RFC 1002 4.2.6), refreshes of the ones it holds
// go on, other PCs still register, and a release makes room. The refusal
// is counted every time and logged once per CapLogInterval.
func TestWINSNamesPerOwnerCap(t *testing.T) {
	clock := newFakeClock()
	var log logBuffer
	s, srv := startLocal(t, Config{WINS: true, MaxNamesPerOwner: 3, now: clock.Now, Log: log.logger()})
	c := newClient(t, "127.0.0.1:0", srv)
	reg := func(id uint16, name string, flags uint16, addr netip.Addr, c *client) *wire.Packet {
		t.Helper()
		return c.roundTrip(wire.NewRegistration(id, wire.MustName(name, 0x20, ""), 3600, wire.NB{Flags: flags, Addr: addr}, false))
	}
	for i, n := range []string{"PC-A", "PC-B", "PC-C"} {
		if r := reg(uint16(i+1), n, 0, lo, c); r.Kind() != wire.KindPositiveRegistration {
			t.Fatalf("registration %d of %d: %s", i+1, 3, r)
		}
	}
	refusals := map[string]uint16{"PC-D": 0, "OFFICE": wire.NBGroup}
	id := uint16(10)
	for n, flags := range refusals {
		id++
		if r := reg(id, n, flags, lo, c); r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeRfsErr {
			t.Errorf("registration of %s over the bound: %s, want RFS_ERR", n, r)
		}
	}
	if r := c.roundTrip(wire.NewQuery(20, wire.MustName("PC-D", 0x20, ""), false, true)); r.Kind() != wire.KindNegativeQuery {
		t.Errorf("refused name answered: %s", r)
	}
	if r := c.roundTrip(wire.NewRefresh(21, wire.MustName("PC-A", 0x20, ""), 3600, wire.NB{Addr: lo})); r.Kind() != wire.KindPositiveRegistration {
		t.Errorf("refresh at the bound: %s", r)
	}
	other := netip.MustParseAddr("127.0.0.2")
	oc := newClient(t, netip.AddrPortFrom(other, 0).String(), srv)
	if r := reg(22, "PC-D", 0, other, oc); r.Kind() != wire.KindPositiveRegistration {
		t.Errorf("another PC locked out: %s", r)
	}
	if r := c.roundTrip(wire.NewRelease(23, wire.MustName("PC-B", 0x20, ""), wire.NB{Addr: lo}, false)); r.Kind() != wire.KindPositiveRelease {
		t.Fatalf("release: %s", r)
	}
	if r := reg(24, "PC-E", 0, lo, c); r.Kind() != wire.KindPositiveRegistration {
		t.Errorf("registration after a release: %s", r)
	}
	if got := s.Status().Counters["refused: owner at its name limit"]; got != 2 {
		t.Errorf("refusals counted: %d, want 2", got)
	}
	const line = "the address holds as many names as it may"
	if n := strings.Count(log.String(), line); n != 1 {
		t.Errorf("%d log lines for 2 refusals within the interval, want 1:\n%s", n, log.String())
	}
	clock.Add(DefaultCapLogInterval)
	if r := reg(25, "PC-F", 0, lo, c); r.Rcode != wire.RcodeRfsErr {
		t.Errorf("registration over the bound: %s", r)
	}
	if n := strings.Count(log.String(), line); n != 2 || !strings.Contains(log.String(), "not_logged_since_last=1") {
		t.Errorf("after the interval: %d lines, want 2 with one held back:\n%s", n, log.String())
	}
}

// A flood from one address (the 4,096 names of issue 9) fills its own
// share only; the table has room for the PCs.
func TestWINSFloodFromOneHost(t *testing.T) {
	s, srv := startLocal(t, Config{WINS: true, RateLimit: -1})
	c := newClient(t, "127.0.0.1:0", srv)
	refused := 0
	for i := range 200 {
		r := c.roundTrip(wire.NewRegistration(uint16(i+1), wire.MustName(fmt.Sprintf("FLOOD%d", i), 0x20, ""), 0, wire.NB{Addr: lo}, false))
		if r.Kind() == wire.KindNegativeRegistration && r.Rcode == wire.RcodeRfsErr {
			refused++
		}
	}
	if len(s.Status().Table) != DefaultMaxNamesPerOwner || refused != 200-DefaultMaxNamesPerOwner {
		t.Errorf("%d names in the table, %d refused; want %d and %d", len(s.Status().Table), refused, DefaultMaxNamesPerOwner, 200-DefaultMaxNamesPerOwner)
	}
}

// Granted TTLs are held to [WINSMinTTL, WINSMaxTTL]; 0 (infinite) gets the
// maximum, and the name is gone after it.
func TestWINSTTLCaps(t *testing.T) {
	clock := newFakeClock()
	var log logBuffer
	s, srv := startLocal(t, Config{WINS: true, WINSMinTTL: 10 * time.Minute, WINSMaxTTL: time.Hour, now: clock.Now, Log: log.logger()})
	c := newClient(t, "127.0.0.1:0", srv)
	for i, tc := range []struct {
		asked, granted uint32
	}{{0, 3600}, {1, 600}, {1800, 1800}, {1 << 31, 3600}} {
		n := wire.MustName(fmt.Sprintf("TTL%d", i), 0x20, "")
		r := c.roundTrip(wire.NewRegistration(uint16(i+1), n, tc.asked, wire.NB{Addr: lo}, false))
		if r.Kind() != wire.KindPositiveRegistration || r.Answers[0].TTL != tc.granted {
			t.Errorf("TTL %d asked: %s granted %d, want %d", tc.asked, r, r.Answers[0].TTL, tc.granted)
		}
	}
	if got := s.Status().Counters["granted TTL capped"]; got != 3 {
		t.Errorf("capped TTLs counted: %d, want 3", got)
	}
	if n := strings.Count(log.String(), "granted another TTL than asked"); n != 1 {
		t.Errorf("%d log lines for capped TTLs within the interval, want 1", n)
	}
	clock.Add(time.Hour)
	if r := c.roundTrip(wire.NewQuery(9, wire.MustName("TTL0", 0x20, ""), false, true)); r.Kind() != wire.KindNegativeQuery {
		t.Errorf("name registered with TTL 0 still there after the maximum TTL: %s", r)
	}
}

// A table saved under longer limits (or by an older version, which
// granted 6 days for TTL 0 and no bound per owner) is held to today's
// when it is read back.
func TestWINSTableLoadKeepsBounds(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wins.json")
	clock := newFakeClock()
	now := clock.Now()
	ft := fileTable{Version: 1}
	flood := netip.MustParseAddr("10.0.0.66")
	for i := range 40 {
		n := wire.MustName(fmt.Sprintf("FLOOD%d", i), 0x20, "")
		ft.Names = append(ft.Names, fileEntry{Label: hex.EncodeToString(n.Label[:]), Owners: []fileOwner{{flood, 0, now.Add(6 * 24 * time.Hour)}}})
	}
	pc := wire.MustName("PC", 0x20, "")
	ft.Names = append(ft.Names, fileEntry{Label: hex.EncodeToString(pc.Label[:]), Owners: []fileOwner{{netip.MustParseAddr("10.0.0.7"), 0, now.Add(time.Hour)}}})
	data, _ := json.Marshal(ft)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Name: "CONCIERGE", Workgroup: "WORKGROUP", WINS: true, StateFile: file, WINSMaxTTL: 2 * time.Hour, now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := s.Status()
	if len(st.Table) != DefaultMaxNamesPerOwner+1 {
		t.Errorf("%d names loaded, want %d of the flood and the PC", len(st.Table), DefaultMaxNamesPerOwner+1)
	}
	for _, e := range st.Table {
		want := "2h0m0s"
		if e.Name == "PC<20>" {
			want = "1h0m0s"
		}
		if e.TTLLeft != want {
			t.Errorf("%s: TTL left %s, want %s", e.Name, e.TTLLeft, want)
		}
	}
}

// panicOn makes the handler panic on every packet about the name PANIC.
func panicOn(p *wire.Packet) {
	if len(p.Questions) > 0 && p.Questions[0].Name.Base() == "PANIC" {
		panic("test: a bug in a handler")
	}
}

// startLinks serves on a loopback UDP socket as startLocal does, read
// with recvmmsg when batched (the path ListenAndServe uses), and on a
// loopback TCP listener.
func startLinks(t *testing.T, cfg Config, batched bool) (*Server, netip.AddrPort, string) {
	t.Helper()
	cfg.Name, cfg.Workgroup = "CONCIERGE", "WORKGROUP"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ifc := Interface{Name: "lo", Addr: lo, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Broadcast: netip.MustParseAddr("127.255.255.255"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	l := &link{ifc: ifc, pc: pc, tcp: tl, port: int(udpAddrPort(pc.LocalAddr()).Port())}
	if batched {
		l.p4 = ipv4.NewPacketConn(pc)
		if err := l.p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
			t.Fatal(err)
		}
		l.src = &ipv4.ControlMessage{Src: lo.AsSlice()}
	}
	if err := s.serve([]*link{l}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	<-s.Claimed()
	return s, udpAddrPort(pc.LocalAddr()), tl.Addr().String()
}

// tcpExchange sends one framed message on c and returns the answer, or
// the read error.
func tcpExchange(c net.Conn, p *wire.Packet) (*wire.Packet, error) {
	b, _ := p.Pack()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)); err != nil {
		return nil, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	return wire.Parse(body)
}

// A handler that panics loses its packet (UDP, both read paths) or its
// connection (137/tcp); the panic is logged with its stack and counted,
// and the service goes on answering.
func TestPanicInHandlerDoesNotEndTheService(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			var log logBuffer
			s, udp, tcp := startLinks(t, Config{WINS: true, onPacket: panicOn, Log: log.logger()}, batched)
			c := newClient(t, "127.0.0.1:0", udp)
			panicky := wire.NewQuery(1, wire.MustName("PANIC", 0x20, ""), false, true)
			c.noAnswerTo(panicky, "query that panics")
			if r := c.roundTrip(wire.NewQuery(2, wire.MustName("CONCIERGE", 0x20, ""), false, true)); r.Kind() != wire.KindPositiveQuery {
				t.Fatalf("after a panic: %s", r)
			}

			conn, err := net.Dial("tcp4", tcp)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if r, err := tcpExchange(conn, panicky); err == nil {
				t.Fatalf("137/tcp answered a message that panics: %s", r)
			}
			conn2, err := net.Dial("tcp4", tcp)
			if err != nil {
				t.Fatal(err)
			}
			defer conn2.Close()
			if r, err := tcpExchange(conn2, wire.NewQuery(3, wire.MustName("CONCIERGE", 0x00, ""), false, true)); err != nil || r.Kind() != wire.KindPositiveQuery {
				t.Fatalf("137/tcp after a panic: %v %v", r, err)
			}
			if r := c.roundTrip(wire.NewQuery(4, wire.MustName("CONCIERGE", 0x20, ""), false, true)); r.Kind() != wire.KindPositiveQuery {
				t.Fatalf("UDP after a panic on 137/tcp: %s", r)
			}
			if got := s.Status().Counters["panics recovered"]; got != 2 {
				t.Errorf("panics counted: %d, want 2", got)
			}
			out := log.String()
			if strings.Count(out, "handler panicked") != 2 || !strings.Contains(out, "test: a bug in a handler") || !strings.Contains(out, "nameservice.panicOn") {
				t.Errorf("panics not logged with their stack:\n%s", out)
			}
		})
	}
}

package dhcpd

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// clock is the injected time of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	boxAddr = netip.MustParsePrefix("10.77.0.1/24")
	router  = netip.MustParseAddr("10.77.0.254")
	dns1    = netip.MustParseAddr("10.77.0.53")
)

// testConfig is a server on 10.77.0.1/24 with a pool of 10.77.0.100 to
// .100+n-1, memory-only unless file is set, no probe.
func testConfig(_ *testing.T, clk *clock, n int) Config {
	return Config{
		Interface:    "test0",
		Addr:         boxAddr,
		RangeStart:   netip.MustParseAddr("10.77.0.100"),
		RangeEnd:     fromU32(u32(netip.MustParseAddr("10.77.0.100")) + uint32(n) - 1),
		LeaseTime:    time.Hour,
		Routers:      []netip.Addr{router},
		DNS:          []netip.Addr{dns1},
		Domain:       "office.test",
		NetBIOSScope: "scope.test",
		CommitWindow: 2 * time.Millisecond,
		LazyWrite:    time.Hour,
		ProbeTimeout: -1,
		DetectWindow: -1,
		RateLimit:    1000,
		RateBurst:    1000,
		Now:          clk.now,
	}
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mac(n byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, 0, n} }

var peer = &net.UDPAddr{IP: net.IPv4zero, Port: ClientPort}

// exchange hands m to the server and returns the decoded reply and where
// it goes, or nil.
func exchange(t *testing.T, s *Server, m *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	t.Helper()
	out, to := s.handle(context.Background(), m.ToBytes(), peer)
	if out == nil {
		return nil, nil
	}
	r, err := dhcpv4.FromBytes(out)
	if err != nil {
		t.Fatalf("server sent a packet it cannot parse: %v", err)
	}
	return r, to.(*net.UDPAddr)
}

func discover(t *testing.T, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// getLease runs DISCOVER, OFFER, REQUEST (SELECTING), ACK for hw and returns
// the ACK.
func getLease(t *testing.T, s *Server, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer, _ := exchange(t, s, discover(t, hw, mods...))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("no OFFER for %s: %v", hw, offer)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	ack, _ := exchange(t, s, req)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("no ACK for %s: %v", hw, ack)
	}
	if !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("ACK for %s, offered %s", ack.YourIPAddr, offer.YourIPAddr)
	}
	return ack
}

func ip(s string) net.IP { return netip.MustParseAddr(s).AsSlice() }

func TestLeaseCarriesTheOptions(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	s := newTestServer(t, testConfig(t, clk, 10))
	offer, to := exchange(t, s, discover(t, mac(1)))
	if offer == nil {
		t.Fatal("no offer")
	}
	if !to.IP.Equal(net.IPv4bcast) || to.Port != ClientPort {
		t.Errorf("OFFER to a client without address went to %v, want the broadcast address", to)
	}
	if got := offer.YourIPAddr.String(); got != "10.77.0.100" {
		t.Errorf("offered %s, want the first address of the pool", got)
	}
	ack := getLease(t, s, mac(1))
	for _, m := range []*dhcpv4.DHCPv4{offer, ack} {
		checks := []struct {
			name      string
			got, want string
		}{
			{"server id (54)", m.ServerIdentifier().String(), "10.77.0.1"},
			{"subnet mask (1)", net.IP(m.SubnetMask()).String(), "255.255.255.0"},
			{"router (3)", fmtIPs(m.Router()), "10.77.0.254"},
			{"DNS (6)", fmtIPs(m.DNS()), "10.77.0.53"},
			{"domain (15)", m.DomainName(), "office.test"},
			{"NetBIOS name server (44)", fmtIPs(m.NetBIOSNameServers()), "10.77.0.1"},
			{"NetBIOS node type (46)", string(m.Options.Get(dhcpv4.OptionNetBIOSOverTCPIPNodeType)), "\x08"},
			{"NetBIOS scope (47)", string(m.Options.Get(dhcpv4.OptionNetBIOSOverTCPIPScope)), "scope.test"},
			{"lease time (51)", m.IPAddressLeaseTime(0).String(), "1h0m0s"},
			{"T1 (58)", m.IPAddressRenewalTime(0).String(), "30m0s"},
			{"T2 (59)", m.IPAddressRebindingTime(0).String(), "52m30s"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s %s: %q, want %q", m.MessageType(), c.name, c.got, c.want)
			}
		}
	}
}

func fmtIPs(ips []net.IP) string {
	s := ""
	for i, a := range ips {
		if i > 0 {
			s += ","
		}
		s += a.String()
	}
	return s
}

func TestReservationGivesTheFixedAddress(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 2)
	fixed := netip.MustParseAddr("10.77.0.50") // outside the range: allowed
	inRange := netip.MustParseAddr("10.77.0.100")
	cfg.Reservations = []Reservation{{MAC: mac(1), IP: fixed}, {MAC: mac(2), IP: inRange}}
	s := newTestServer(t, cfg)
	if got := getLease(t, s, mac(1)).YourIPAddr.String(); got != fixed.String() {
		t.Errorf("reserved client got %s, want %s", got, fixed)
	}
	// Another client never gets the address reserved for mac(2).
	if got := getLease(t, s, mac(3)).YourIPAddr.String(); got != "10.77.0.101" {
		t.Errorf("other client got %s, want 10.77.0.101 (.100 is reserved)", got)
	}
	if r, _ := exchange(t, s, discover(t, mac(4))); r != nil {
		t.Errorf("pool is full but got %s", r.YourIPAddr)
	}
	// A reserved client asking for another address is refused.
	req := initReboot(t, mac(1), "10.77.0.101")
	if r, _ := exchange(t, s, req); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("reserved client asking for another address: %v, want NAK", r)
	}
}

func initReboot(t testing.TB, hw net.HardwareAddr, addr string) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip(addr))))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func renew(t testing.TB, hw net.HardwareAddr, addr string) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(ip(addr)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRequestStates(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	s := newTestServer(t, testConfig(t, clk, 10))
	a := getLease(t, s, mac(1)).YourIPAddr.String()
	b := getLease(t, s, mac(2)).YourIPAddr.String()
	cases := []struct {
		name string
		m    *dhcpv4.DHCPv4
		want dhcpv4.MessageType // 0: no answer
		to   string
	}{
		{"INIT-REBOOT own address", initReboot(t, mac(1), a), dhcpv4.MessageTypeAck, "255.255.255.255"},
		{"INIT-REBOOT another's address", initReboot(t, mac(1), b), dhcpv4.MessageTypeNak, "255.255.255.255"},
		{"INIT-REBOOT other network", initReboot(t, mac(1), "10.99.0.7"), dhcpv4.MessageTypeNak, "255.255.255.255"},
		{"INIT-REBOOT free address, unknown client", initReboot(t, mac(5), "10.77.0.105"), dhcpv4.MessageTypeAck, "255.255.255.255"},
		{"INIT-REBOOT outside the pool", initReboot(t, mac(6), "10.77.0.20"), dhcpv4.MessageTypeNak, "255.255.255.255"},
		{"RENEWING", renew(t, mac(1), a), dhcpv4.MessageTypeAck, a},
		{"RENEWING another's address", renew(t, mac(1), b), dhcpv4.MessageTypeNak, "255.255.255.255"},
		{"REQUEST without address", renew(t, mac(1), "0.0.0.0"), 0, ""},
	}
	for _, c := range cases {
		r, to := exchange(t, s, c.m)
		switch {
		case c.want == 0 && r != nil:
			t.Errorf("%s: got %s, want no answer", c.name, r.MessageType())
		case c.want == 0:
		case r == nil:
			t.Errorf("%s: no answer, want %s", c.name, c.want)
		case r.MessageType() != c.want || to.IP.String() != c.to:
			t.Errorf("%s: %s to %s, want %s to %s", c.name, r.MessageType(), to.IP, c.want, c.to)
		}
	}
	// Renewal kept the address.
	if r, _ := exchange(t, s, renew(t, mac(1), a)); r == nil || r.YourIPAddr.String() != a {
		t.Errorf("renewal: %v, want ACK for %s", r, a)
	}
}

func TestSelectingAnotherServerFreesTheOffer(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	s := newTestServer(t, testConfig(t, clk, 1))
	offer, _ := exchange(t, s, discover(t, mac(1)))
	req, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip("10.77.0.9"))))
	if r, _ := exchange(t, s, req); r != nil {
		t.Fatalf("answered a REQUEST for another server: %s", r.MessageType())
	}
	if r, _ := exchange(t, s, discover(t, mac(2))); r == nil {
		t.Error("the offer declined by choosing another server is still held")
	}
}

func TestReleaseFreesAndTheClientGetsItBack(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	s := newTestServer(t, testConfig(t, clk, 5))
	ack := getLease(t, s, mac(1))
	rel, _ := dhcpv4.NewReleaseFromACK(ack)
	if r, _ := exchange(t, s, rel); r != nil {
		t.Fatalf("answered a RELEASE: %v", r)
	}
	if st := s.Status(); st.Bound != 0 || st.Leases[0].State != "free" {
		t.Errorf("after RELEASE: %d bound, %+v", st.Bound, st.Leases)
	}
	getLease(t, s, mac(2)) // takes a never-used address, not the released one
	if got := getLease(t, s, mac(1)).YourIPAddr; !got.Equal(ack.YourIPAddr) {
		t.Errorf("client came back and got %s, want its old %s", got, ack.YourIPAddr)
	}
}

func TestDeclineKeepsTheAddressOutForAWhile(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 2)
	cfg.DeclineHold = 10 * time.Minute
	s := newTestServer(t, cfg)
	ack := getLease(t, s, mac(1))
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip("10.77.0.1"))))
	// A client that does not hold the address cannot decline it.
	other, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(9)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr)))
	exchange(t, s, other)
	if len(s.Status().Declined) != 0 {
		t.Fatal("a stranger declined a client's address")
	}
	exchange(t, s, dec)
	if got := s.Status().Declined; len(got) != 1 || got[0] != ack.YourIPAddr.String() {
		t.Fatalf("declined: %v", got)
	}
	second := getLease(t, s, mac(1)).YourIPAddr
	if second.Equal(ack.YourIPAddr) {
		t.Fatal("declined address offered again at once")
	}
	if r, _ := exchange(t, s, discover(t, mac(3))); r != nil {
		t.Fatalf("pool has one declined and one bound address, yet offered %s", r.YourIPAddr)
	}
	clk.add(cfg.DeclineHold + time.Second)
	if r, _ := exchange(t, s, discover(t, mac(3))); r == nil || !r.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Fatalf("after the decline hold: %v, want %s again", r, ack.YourIPAddr)
	}
}

func TestProbeSkipsAnAddressInUse(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 3)
	cfg.ProbeTimeout = time.Second
	var probed []netip.Addr
	var mu sync.Mutex
	cfg.Probe = func(ctx context.Context, a netip.Addr) bool {
		mu.Lock()
		defer mu.Unlock()
		probed = append(probed, a)
		return a == netip.MustParseAddr("10.77.0.100") // a squatter
	}
	s := newTestServer(t, cfg)
	if got := getLease(t, s, mac(1)).YourIPAddr.String(); got != "10.77.0.101" {
		t.Errorf("got %s, want .101 (.100 answers pings)", got)
	}
	// Renewal and rediscovery of a held address are not probed again.
	exchange(t, s, discover(t, mac(1)))
	mu.Lock()
	defer mu.Unlock()
	if len(probed) != 2 {
		t.Errorf("probed %v, want .100 and .101 once each", probed)
	}
	if c := s.Status().Counters.Conflicts; c != 1 {
		t.Errorf("conflicts %d", c)
	}
}

func TestExpiredLeaseGoesToTheNextClient(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 1)
	s := newTestServer(t, cfg)
	first := getLease(t, s, mac(1)).YourIPAddr
	if r, _ := exchange(t, s, discover(t, mac(2))); r != nil {
		t.Fatal("offered an address under a live lease")
	}
	clk.add(cfg.LeaseTime + time.Second)
	if got := getLease(t, s, mac(2)).YourIPAddr; !got.Equal(first) {
		t.Errorf("got %s after the lease ran out, want %s", got, first)
	}
	if r, _ := exchange(t, s, renew(t, mac(1), first.String())); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("old holder renewing: %v, want NAK", r)
	}
}

func TestConcurrentClientsNeverShareAnAddress(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	dir := t.TempDir()
	cfg := testConfig(t, clk, 50)
	cfg.LeaseFile = filepath.Join(dir, "leases.json")
	cfg.CommitWindow = 20 * time.Millisecond
	s := newTestServer(t, cfg)
	var wg sync.WaitGroup
	got := make([]string, 60)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hw := net.HardwareAddr{0x52, 0x54, 0, 0, 1, byte(i)}
			offer, _ := exchange(t, s, discover(t, hw))
			if offer == nil {
				return
			}
			req, _ := dhcpv4.NewRequestFromOffer(offer)
			if ack, _ := exchange(t, s, req); ack != nil && ack.MessageType() == dhcpv4.MessageTypeAck {
				got[i] = ack.YourIPAddr.String()
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	n := 0
	for _, a := range got {
		if a == "" {
			continue
		}
		if seen[a] {
			t.Errorf("%s given twice", a)
		}
		seen[a] = true
		n++
	}
	if n != 50 {
		t.Errorf("%d clients got a lease from a pool of 50", n)
	}
	// Group commit: 50 ACKs in a burst share a few writes.
	if w := s.Status().Counters.Writes; w > 10 {
		t.Errorf("%d lease file writes for a burst of 50 leases", w)
	}
}

// TestAckedLeaseIsOnDisk checks the order that makes a crash harmless:
// when the ACK leaves, the lease is in the file, so a server started from
// that file (after a crash, no shutdown) never gives the address away.
func TestAckedLeaseIsOnDisk(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	dir := t.TempDir()
	cfg := testConfig(t, clk, 2)
	cfg.LeaseFile = filepath.Join(dir, "leases.json")
	s := newTestServer(t, cfg)
	a := getLease(t, s, mac(1), dhcpv4.WithOption(dhcpv4.OptHostName("pc-one"))).YourIPAddr
	data, err := os.ReadFile(cfg.LeaseFile)
	if err != nil {
		t.Fatalf("no lease file after the ACK: %v", err)
	}
	crashed := newTestServer(t, cfg) // the first is never shut down
	_ = data
	st := crashed.Status()
	if st.Bound != 1 || st.Leases[0].IP != a.String() || st.Leases[0].Hostname != "pc-one" {
		t.Fatalf("after a crash: %+v", st.Leases)
	}
	if got := getLease(t, crashed, mac(2)).YourIPAddr; got.Equal(a) {
		t.Fatal("after a crash the address was given to another client")
	}
	if got := getLease(t, crashed, mac(1)).YourIPAddr; !got.Equal(a) {
		t.Fatalf("after a crash the client got %s, want %s", got, a)
	}
}

func TestRenewalsWithinTheHorizonAreNotWritten(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 2)
	cfg.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	s := newTestServer(t, cfg)
	a := getLease(t, s, mac(1)).YourIPAddr.String()
	w0 := s.Status().Counters.Writes
	// Renewals at T1 for one lease time: within the written horizon.
	for i := 0; i < 2; i++ {
		clk.add(cfg.LeaseTime / 2)
		if r, _ := exchange(t, s, renew(t, mac(1), a)); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("renewal %d: %v", i, r)
		}
	}
	if w := s.Status().Counters.Writes; w != w0 {
		t.Errorf("%d writes for renewals within the horizon, want none", w-w0)
	}
	clk.add(cfg.LeaseTime / 2)
	exchange(t, s, renew(t, mac(1), a))
	if w := s.Status().Counters.Writes; w != w0+1 {
		t.Errorf("%d writes for a renewal beyond the horizon, want 1", w-w0)
	}
}

func TestInformGetsOptionsOnly(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	s := newTestServer(t, testConfig(t, clk, 2))
	m, _ := dhcpv4.NewInform(mac(7), ip("10.77.0.30"))
	r, to := exchange(t, s, m)
	if r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INFORM: %v", r)
	}
	if !r.YourIPAddr.IsUnspecified() || r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || to.IP.String() != "10.77.0.30" {
		t.Errorf("INFORM reply: yiaddr %s, lease time %v, to %s", r.YourIPAddr, r.Options.Has(dhcpv4.OptionIPAddressLeaseTime), to)
	}
	if len(r.NetBIOSNameServers()) != 1 {
		t.Error("INFORM reply lacks option 44")
	}
}

func TestMalformedAndFloodsAreDroppedAndCounted(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 5)
	cfg.RateLimit, cfg.RateBurst = 1, 3
	s := newTestServer(t, cfg)
	for _, b := range [][]byte{nil, {1, 1, 6}, make([]byte, 300)} {
		if out, _ := s.handle(context.Background(), b, peer); out != nil {
			t.Errorf("answered %x", b)
		}
	}
	if c := s.Status().Counters.Malformed; c != 3 {
		t.Errorf("malformed %d, want 3", c)
	}
	answered := 0
	for i := 0; i < 10; i++ {
		if r, _ := exchange(t, s, discover(t, mac(1))); r != nil {
			answered++
		}
	}
	if answered != 3 || s.Status().Counters.RateLimited != 7 {
		t.Errorf("answered %d of 10 in a burst of 3, rate-limited %d", answered, s.Status().Counters.RateLimited)
	}
	clk.add(time.Second)
	if r, _ := exchange(t, s, discover(t, mac(1))); r == nil {
		t.Error("still limited a second later")
	}
}

func TestReconfigureKeepsLeases(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(t, clk, 5)
	s := newTestServer(t, cfg)
	a := getLease(t, s, mac(1)).YourIPAddr.String()
	cfg.Domain = "new.test"
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	r, _ := exchange(t, s, renew(t, mac(1), a))
	if r == nil || r.DomainName() != "new.test" {
		t.Fatalf("after reconfigure: %v", r)
	}
	cfg.Interface = "other0"
	if err := s.Reconfigure(cfg); err != ErrRestart {
		t.Errorf("interface change: %v, want ErrRestart", err)
	}
}

func TestDefaultRange(t *testing.T) {
	for _, c := range []struct{ subnet, start, end string }{
		{"192.168.1.0/24", "192.168.1.128", "192.168.1.254"},
		{"10.0.0.0/16", "10.0.128.0", "10.0.255.254"},
		{"10.0.0.0/30", "10.0.0.2", "10.0.0.2"},
	} {
		s, e := DefaultRange(netip.MustParsePrefix(c.subnet))
		if s.String() != c.start || e.String() != c.end {
			t.Errorf("%s: %s-%s, want %s-%s", c.subnet, s, e, c.start, c.end)
		}
	}
}

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

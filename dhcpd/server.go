// Package dhcpd is the LAN's DHCP server: RFC 2131 (the protocol and the
// client states of 4.3.2), with the options of RFC 2132, among them the
// NetBIOS name server (8.5, option 44), node type (8.7, option 46) and
// scope (8.8, option 47) that make the office's PCs use the box as their
// WINS server.
//
// github.com/insomniacslk/dhcp/dhcpv4 is the packet codec and its server4
// opens the socket; the read loop is ours (server4.Server does not count
// malformed packets, bound its goroutines, rate-limit clients or recover
// from a panic in a handler), and so are the pool, the lease table with
// its state machine, the ICMP probe and the lease file, written with group
// commit through internal/durable: a lease is on disk before its ACK.
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// Ports of RFC 2131 4.1.
const (
	ServerPort = 67
	ClientPort = 68
)

var (
	// ErrNoInterface: the LAN interface has no IPv4 address (or none
	// was named and there is not exactly one candidate).
	ErrNoInterface = errors.New("dhcpd: no LAN interface with an IPv4 address")
	// ErrRestart: Reconfigure cannot change the interface or lease file
	// of a running server; start a new one.
	ErrRestart = errors.New("dhcpd: interface or lease file changed; restart the server")
	errClosed  = errors.New("dhcpd: server closed")
)

// Reservation gives a client (by hardware address) a fixed address.
type Reservation struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

// Config is the server's settings. Zero values take the defaults named in
// defaults.go.
type Config struct {
	// Interface is the LAN interface the server listens on. Empty: the
	// one interface that is up with a private IPv4 broadcast address.
	Interface string
	// Addr is the box's address and subnet on Interface (the server
	// identifier, option 54). Zero: read from the interface.
	Addr netip.Prefix
	// RangeStart and RangeEnd bound the dynamic pool; zero: the bound of
	// DefaultRange.
	RangeStart, RangeEnd netip.Addr
	LeaseTime            time.Duration
	Routers              []netip.Addr // option 3
	DNS                  []netip.Addr // option 6
	Domain               string       // option 15
	// WINS are the NetBIOS name servers (option 44); empty: the box.
	WINS []netip.Addr
	// NetBIOSScope is option 47, sent when set.
	NetBIOSScope string
	Reservations []Reservation
	// LeaseFile keeps the leases across restarts; empty: memory only.
	LeaseFile string

	CommitWindow time.Duration
	LazyWrite    time.Duration
	OfferHold    time.Duration
	DeclineHold  time.Duration
	// ProbeTimeout bounds the ICMP echo probe; negative turns it off.
	ProbeTimeout time.Duration
	// DetectWindow is how long ListenAndServe listens for other DHCP
	// servers; negative skips the check.
	DetectWindow time.Duration
	RateLimit    int
	RateBurst    int

	// Probe, if set, replaces the ICMP echo probe: it reports whether
	// the address answers (is in use). For tests.
	Probe func(ctx context.Context, a netip.Addr) bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseTime, DefaultLeaseTime)
	def(&c.CommitWindow, DefaultCommitWindow)
	def(&c.LazyWrite, DefaultLazyWrite)
	def(&c.OfferHold, DefaultOfferHold)
	def(&c.DeclineHold, DefaultDeclineHold)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	def(&c.DetectWindow, DefaultDetectWindow)
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// resolve fills Addr from the interface and the range from the subnet,
// and checks that the pool and reservations fit the subnet.
func (c *Config) resolve() error {
	if !c.Addr.IsValid() {
		name, p, err := InterfaceAddr(c.Interface)
		if err != nil {
			return err
		}
		c.Interface, c.Addr = name, p
	}
	if !c.Addr.Addr().Is4() || c.Addr.Bits() > 30 {
		return fmt.Errorf("dhcpd: %s is not an IPv4 subnet with room for clients", c.Addr)
	}
	subnet := c.Addr.Masked()
	defStart, defEnd := DefaultRange(subnet)
	if !c.RangeStart.IsValid() {
		c.RangeStart = defStart
	}
	if !c.RangeEnd.IsValid() {
		c.RangeEnd = defEnd
	}
	switch {
	case !subnet.Contains(c.RangeStart) || !subnet.Contains(c.RangeEnd):
		return fmt.Errorf("dhcpd: range %s-%s is not inside the LAN subnet %s", c.RangeStart, c.RangeEnd, subnet)
	case c.RangeEnd.Less(c.RangeStart):
		return fmt.Errorf("dhcpd: range start %s is after its end %s", c.RangeStart, c.RangeEnd)
	case u32(c.RangeEnd)-u32(c.RangeStart) >= MaxPoolSize:
		return fmt.Errorf("dhcpd: range %s-%s holds more than %d addresses", c.RangeStart, c.RangeEnd, MaxPoolSize)
	}
	for _, r := range c.Reservations {
		if !subnet.Contains(r.IP) || r.IP == c.Addr.Addr() {
			return fmt.Errorf("dhcpd: reservation %s=%s is not a client address in the LAN subnet %s", r.MAC, r.IP, subnet)
		}
	}
	if len(c.WINS) == 0 {
		c.WINS = []netip.Addr{c.Addr.Addr()}
	}
	return nil
}

// InterfaceAddr returns the interface's first IPv4 address with its
// subnet. With name empty it picks the one interface that is up, not the
// loopback, and has a private IPv4 address.
func InterfaceAddr(name string) (string, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("dhcpd: %w", err)
	}
	var found []string
	var addr netip.Prefix
	for _, ifc := range ifs {
		if name != "" && ifc.Name != name || name == "" && (ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0) {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP.To4())
			if name == "" && !ip.IsPrivate() {
				continue
			}
			bits, _ := ipn.Mask.Size()
			found = append(found, ifc.Name)
			addr = netip.PrefixFrom(ip, bits)
			break
		}
	}
	if len(found) != 1 {
		if name == "" && len(found) > 1 {
			return "", netip.Prefix{}, fmt.Errorf("%w: several candidates (%s); name one", ErrNoInterface, strings.Join(found, ", "))
		}
		return "", netip.Prefix{}, fmt.Errorf("%w: %q", ErrNoInterface, name)
	}
	return found[0], addr, nil
}

// Server is a DHCP server on one LAN interface.
type Server struct {
	mu        sync.Mutex
	cfg       Config
	pool      *pool
	store     *store
	opts      dhcpv4.Options // options every OFFER, ACK and INFORM reply carries
	others    map[netip.Addr]time.Time
	detecting bool

	conn     net.PacketConn
	prober   *icmpProber
	probeMAC net.HardwareAddr
	limiter  *rateLimiter
	sem      chan struct{}
	wg       sync.WaitGroup
	closing  atomic.Bool
	detected chan struct{} // closed when the check for other servers ends

	c counters
}

// New makes a server and loads its lease file. It opens no socket.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	s := &Server{
		pool:     newPool(),
		others:   map[netip.Addr]time.Time{},
		sem:      make(chan struct{}, MaxInFlight),
		detected: make(chan struct{}),
		probeMAC: net.HardwareAddr{0x02, 0xdc, 0x0d, 0, 0, 0},
	}
	s.apply(cfg)
	s.store = newStore(cfg.LeaseFile, cfg.CommitWindow, cfg.LazyWrite, s.encode)
	if err := s.store.load(s.pool, cfg.Now()); err != nil {
		s.store.close()
		return nil, err
	}
	return s, nil
}

// apply installs cfg (resolved) with s.mu held or before the server runs.
func (s *Server) apply(cfg Config) {
	s.cfg = cfg
	p := s.pool
	p.subnet, p.server = cfg.Addr.Masked(), cfg.Addr.Addr()
	p.start, p.end = cfg.RangeStart, cfg.RangeEnd
	p.excluded = map[netip.Addr]bool{p.server: true}
	for _, r := range cfg.Routers {
		p.excluded[r] = true
	}
	p.reserved, p.reserve = map[string]netip.Addr{}, map[netip.Addr]string{}
	for _, r := range cfg.Reservations {
		p.reserved[string(r.MAC)] = r.IP
		p.reserve[r.IP] = string(r.MAC)
	}
	for a, l := range p.byAddr {
		if !p.subnet.Contains(a) {
			delete(p.byAddr, a)
			if p.byClient[l.client] == l {
				delete(p.byClient, l.client)
			}
		}
	}
	s.opts = replyOptions(cfg)
	s.limiter = newRateLimiter(cfg.RateLimit, cfg.RateBurst)
}

// replyOptions are the options of RFC 2132 sent with every lease.
func replyOptions(cfg Config) dhcpv4.Options {
	o := dhcpv4.Options{}
	ips := func(list []netip.Addr) []net.IP {
		out := make([]net.IP, len(list))
		for i, a := range list {
			out[i] = a.AsSlice()
		}
		return out
	}
	subnet := cfg.Addr.Masked()
	o.Update(dhcpv4.OptServerIdentifier(cfg.Addr.Addr().AsSlice()))
	o.Update(dhcpv4.OptSubnetMask(net.CIDRMask(subnet.Bits(), 32)))
	o.Update(dhcpv4.OptBroadcastAddress(broadcastOf(subnet).AsSlice()))
	if len(cfg.Routers) > 0 {
		o.Update(dhcpv4.OptRouter(ips(cfg.Routers)...))
	}
	if len(cfg.DNS) > 0 {
		o.Update(dhcpv4.OptDNS(ips(cfg.DNS)...))
	}
	if cfg.Domain != "" {
		o.Update(dhcpv4.OptDomainName(cfg.Domain))
	}
	o.Update(dhcpv4.OptNetBIOSNameServers(ips(cfg.WINS)...))                              // RFC 2132 8.5
	o.Update(dhcpv4.OptGeneric(dhcpv4.OptionNetBIOSOverTCPIPNodeType, []byte{NodeTypeH})) // 8.7
	if cfg.NetBIOSScope != "" {
		o.Update(dhcpv4.OptGeneric(dhcpv4.OptionNetBIOSOverTCPIPScope, []byte(cfg.NetBIOSScope))) // 8.8
	}
	return o
}

// Reconfigure applies new settings to the running server, keeping its
// leases. A different interface or lease file needs a new server
// (ErrRestart).
func (s *Server) Reconfigure(cfg Config) error {
	cfg.setDefaults()
	s.mu.Lock()
	cur := s.cfg
	s.mu.Unlock()
	if cfg.Interface == "" {
		cfg.Interface = cur.Interface
	}
	if cfg.Interface != cur.Interface || cfg.LeaseFile != cur.LeaseFile ||
		cfg.CommitWindow != cur.CommitWindow || cfg.LazyWrite != cur.LazyWrite {
		return ErrRestart
	}
	if err := cfg.resolve(); err != nil {
		return err
	}
	s.mu.Lock()
	s.apply(cfg)
	s.mu.Unlock()
	s.store.changed()
	return nil
}

// ListenAndServe opens the server socket on the interface (port 67, bound
// to the device, broadcasts allowed), opens the ICMP prober, starts
// serving in the background and checks for other DHCP servers.
func (s *Server) ListenAndServe() error {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	conn, err := server4.NewIPv4UDPConn(cfg.Interface, &net.UDPAddr{Port: ServerPort})
	if err != nil {
		return fmt.Errorf("dhcpd: listen on %s: %w", cfg.Interface, err)
	}
	if cfg.Probe == nil && cfg.ProbeTimeout > 0 {
		p, err := newICMPProber()
		if err != nil {
			cfg.Log.Warn("dhcpd: no ICMP socket; addresses are offered without a probe", "err", err)
		} else {
			s.prober = p
		}
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	go s.Serve(conn)
	if cfg.DetectWindow > 0 {
		go s.detect(conn, cfg.DetectWindow)
	} else {
		close(s.detected)
	}
	cfg.Log.Info("dhcpd: serving", "interface", cfg.Interface, "addr", cfg.Addr,
		"range", fmt.Sprintf("%s-%s", cfg.RangeStart, cfg.RangeEnd))
	return nil
}

// Serve reads packets from conn until it is closed, handling each in a
// goroutine of its own (at most MaxInFlight at once).
func (s *Server) Serve(conn net.PacketConn) error {
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	for {
		buf := make([]byte, maxPacket)
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcpd: read: %w", err)
		}
		s.c.received.Add(1)
		select {
		case s.sem <- struct{}{}:
		default:
			s.c.busy.Add(1)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			out, to := s.handle(context.Background(), buf[:n], peer)
			if out != nil {
				if _, err := conn.WriteTo(out, to); err != nil && !s.closing.Load() {
					s.log().Warn("dhcpd: send", "to", to, "err", err)
				}
			}
		}()
	}
}

func (s *Server) log() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Log
}

// Shutdown stops reading, waits for packets in hand (until ctx is done),
// writes the lease file and closes the sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		return nil
	}
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if s.prober != nil {
		s.prober.close()
	}
	s.store.changed()
	s.store.close()
	return err
}

// Close is Shutdown without waiting.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	return nil
}

// handle answers one packet: the reply and where to send it, or nil. It
// never panics: a panic is logged with its stack and counted, and only
// that packet is lost.
func (s *Server) handle(ctx context.Context, data []byte, peer net.Addr) (out []byte, to net.Addr) {
	defer func() {
		if r := recover(); r != nil {
			s.c.panics.Add(1)
			s.log().Error("dhcpd: panic handling a packet", "peer", peer, "panic", r, "stack", string(debug.Stack()))
			out, to = nil, nil
		}
	}()
	m, err := dhcpv4.FromBytes(data)
	if err != nil {
		s.c.malformed.Add(1)
		return nil, nil
	}
	if m.OpCode == dhcpv4.OpcodeBootReply {
		s.sawReply(m, peer)
		return nil, nil
	}
	if m.OpCode != dhcpv4.OpcodeBootRequest || m.HWType != iana.HWTypeEthernet || len(m.ClientHWAddr) != 6 ||
		len(m.ClientIPAddr) != 4 || len(m.GatewayIPAddr) != 4 {
		s.c.malformed.Add(1)
		return nil, nil
	}
	if string(m.ClientHWAddr) == string(s.probeMAC) {
		return nil, nil // our own check for other servers
	}
	s.mu.Lock()
	now := s.cfg.Now()
	allowed := s.limiter.allow(string(m.ClientHWAddr), now)
	s.mu.Unlock()
	if !allowed {
		s.c.rateLimited.Add(1)
		return nil, nil
	}
	var reply *dhcpv4.DHCPv4
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.c.discover.Add(1)
		reply = s.discover(ctx, m)
	case dhcpv4.MessageTypeRequest:
		s.c.request.Add(1)
		reply = s.request(m)
	case dhcpv4.MessageTypeRelease:
		s.c.release.Add(1)
		s.release(m)
	case dhcpv4.MessageTypeDecline:
		s.c.decline.Add(1)
		s.decline(m)
	case dhcpv4.MessageTypeInform:
		s.c.inform.Add(1)
		reply = s.inform(m)
	default:
		s.c.ignored.Add(1)
	}
	if reply == nil {
		return nil, nil
	}
	switch reply.MessageType() {
	case dhcpv4.MessageTypeOffer:
		s.c.offer.Add(1)
	case dhcpv4.MessageTypeAck:
		s.c.ack.Add(1)
	case dhcpv4.MessageTypeNak:
		s.c.nak.Add(1)
	}
	return reply.ToBytes(), replyAddr(m, reply, peer)
}

// replyAddr is where a reply goes (RFC 2131 4.1): to the relay agent, a
// NAK to the broadcast address, to a client that has an address at that
// address, else to the broadcast address. (A unicast to yiaddr would need
// an ARP entry made by hand; every client accepts the broadcast.)
func replyAddr(req, reply *dhcpv4.DHCPv4, peer net.Addr) net.Addr {
	switch {
	case !req.GatewayIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: ServerPort}
	case reply.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	case !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
}

func addrOf(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil && !ip4.IsUnspecified() {
		return netip.AddrFrom4([4]byte(ip4))
	}
	return netip.Addr{}
}

// reply builds an answer of type t to m, with the lease options for a
// (none for a NAK).
func (s *Server) reply(m *dhcpv4.DHCPv4, t dhcpv4.MessageType, a netip.Addr, lease time.Duration) *dhcpv4.DHCPv4 {
	r, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(t))
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t == dhcpv4.MessageTypeNak {
		r.UpdateOption(dhcpv4.OptServerIdentifier(s.pool.server.AsSlice()))
		return r
	}
	if t == dhcpv4.MessageTypeAck {
		r.ClientIPAddr = m.ClientIPAddr // RFC 2131 table 3
	}
	for code, v := range s.opts {
		r.Options[code] = v
	}
	if a.IsValid() {
		r.YourIPAddr = a.AsSlice()
	}
	if lease > 0 {
		r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lease))
		r.UpdateOption(dhcpv4.OptRenewTimeValue(lease / 2))         // T1, RFC 2131 4.4.5
		r.UpdateOption(dhcpv4.OptRebindingTimeValue(lease * 7 / 8)) // T2
	}
	return r
}

// discover picks an address and offers it (RFC 2131 4.3.1): the client's
// reserved or current address, else the one it asks for, else a fresh
// one, probed first.
func (s *Server) discover(ctx context.Context, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	key := clientKey(m.Options.Get(dhcpv4.OptionClientIdentifier), m.ClientHWAddr)
	mac := m.ClientHWAddr
	s.mu.Lock()
	cfg, p, now := s.cfg, s.pool, s.cfg.Now()
	if p.probing[key] {
		s.mu.Unlock()
		return nil // a retransmission while the first is being probed
	}
	a, ok := p.current(key, mac, now)
	fresh := !ok // never the client's: probe it first
	if !ok {
		if want := addrOf(m.RequestedIPAddress()); want.IsValid() && p.available(want, key, mac, now) &&
			p.byAddr[want] == nil {
			a, ok = want, true
		}
	}
	skip := map[netip.Addr]bool{}
	for try := 0; ; try++ {
		if !ok {
			a, ok = p.fresh(key, mac, now, skip)
			if !ok || try >= MaxProbeTries {
				s.mu.Unlock()
				s.c.exhausted.Add(1)
				cfg.Log.Warn("dhcpd: no free address to offer", "mac", mac.String(), "range", fmt.Sprintf("%s-%s", cfg.RangeStart, cfg.RangeEnd))
				return nil
			}
		}
		if l := p.byAddr[a]; l == nil || l.client != key || !l.active(now) {
			p.set(a, key, mac, stateOffered, now.Add(cfg.OfferHold))
		}
		if !fresh {
			break
		}
		p.probing[key] = true
		s.mu.Unlock()
		inUse := s.probe(ctx, cfg, a)
		s.mu.Lock()
		delete(p.probing, key)
		now = cfg.Now()
		if !inUse {
			break
		}
		s.c.conflicts.Add(1)
		cfg.Log.Warn("dhcpd: address answers a ping but has no lease; keeping it out of the pool", "addr", a, "for", cfg.DeclineHold)
		p.decline(a, now.Add(cfg.DeclineHold))
		s.store.changed()
		skip[a], ok = true, false
	}
	s.mu.Unlock()
	return s.reply(m, dhcpv4.MessageTypeOffer, a, cfg.LeaseTime)
}

// probe reports whether a answers an ICMP echo within the probe timeout.
func (s *Server) probe(ctx context.Context, cfg Config, a netip.Addr) bool {
	if cfg.ProbeTimeout < 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ProbeTimeout)
	defer cancel()
	if cfg.Probe != nil {
		return cfg.Probe(ctx, a)
	}
	if s.prober == nil {
		return false
	}
	return s.prober.probe(ctx, a)
}

// request answers a REQUEST in each client state of RFC 2131 4.3.2:
// SELECTING (server identifier set), INIT-REBOOT (requested address, no
// ciaddr), RENEWING and REBINDING (ciaddr). The lease is on disk before
// the ACK is sent.
func (s *Server) request(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	key := clientKey(m.Options.Get(dhcpv4.OptionClientIdentifier), m.ClientHWAddr)
	mac := m.ClientHWAddr
	sid := addrOf(m.ServerIdentifier())
	want := addrOf(m.RequestedIPAddress())
	ciaddr := addrOf(m.ClientIPAddr)
	s.mu.Lock()
	cfg, p, now := s.cfg, s.pool, s.cfg.Now()
	var a netip.Addr
	switch {
	case m.Options.Has(dhcpv4.OptionServerIdentifier): // SELECTING
		if sid != p.server {
			// The client took another server's offer: ours is free.
			if l := p.byClient[key]; l != nil && l.state == stateOffered {
				l.state, l.expires = stateReleased, now
			}
			s.mu.Unlock()
			return nil
		}
		a = want
		if !a.IsValid() {
			a = ciaddr
		}
	case want.IsValid() && !ciaddr.IsValid(): // INIT-REBOOT
		a = want
	case ciaddr.IsValid(): // RENEWING, REBINDING
		a = ciaddr
	default:
		s.mu.Unlock()
		s.c.malformed.Add(1)
		return nil
	}
	// An INIT-REBOOT client on another network is told so; an address
	// held by another client, a reserved one, one outside the pool or a
	// client with a reservation asking for another address is refused.
	fixed, hasFixed := p.reserved[string(mac)]
	if !p.available(a, key, mac, now) || hasFixed && a != fixed {
		s.mu.Unlock()
		cfg.Log.Info("dhcpd: NAK", "mac", mac.String(), "addr", a)
		return s.reply(m, dhcpv4.MessageTypeNak, netip.Addr{}, 0)
	}
	l := p.set(a, key, mac, stateBound, now.Add(cfg.LeaseTime))
	if h := hostname(m.HostName()); h != "" {
		l.hostname = h
	}
	host := l.hostname
	var wait *batch
	if l.horizon.Before(l.expires) {
		l.horizon = now.Add(2 * cfg.LeaseTime)
		wait = s.store.commit()
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait.done
		if wait.err != nil {
			s.c.unacked.Add(1)
			cfg.Log.Error("dhcpd: lease file not written; no ACK", "mac", mac.String(), "addr", a, "err", wait.err)
			return nil
		}
	}
	if wait != nil {
		cfg.Log.Info("dhcpd: lease", "mac", mac.String(), "addr", a, "hostname", host, "lease", cfg.LeaseTime)
	} else {
		cfg.Log.Debug("dhcpd: lease renewed", "mac", mac.String(), "addr", a)
	}
	return s.reply(m, dhcpv4.MessageTypeAck, a, cfg.LeaseTime)
}

// release frees the client's address (RFC 2131 4.3.4).
func (s *Server) release(m *dhcpv4.DHCPv4) {
	key := clientKey(m.Options.Get(dhcpv4.OptionClientIdentifier), m.ClientHWAddr)
	a := addrOf(m.ClientIPAddr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sid := addrOf(m.ServerIdentifier()); sid.IsValid() && sid != s.pool.server {
		return
	}
	if a.IsValid() && s.pool.free(a, key, s.cfg.Now()) {
		s.store.changed()
		s.cfg.Log.Info("dhcpd: released", "mac", m.ClientHWAddr.String(), "addr", a)
	}
}

// decline takes an address a client found in use out of the pool for a
// while (RFC 2131 4.3.3).
func (s *Server) decline(m *dhcpv4.DHCPv4) {
	key := clientKey(m.Options.Get(dhcpv4.OptionClientIdentifier), m.ClientHWAddr)
	a := addrOf(m.RequestedIPAddress())
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.pool.byAddr[a]
	if l == nil || l.client != key {
		return // only the address's holder may decline it
	}
	s.pool.decline(a, s.cfg.Now().Add(s.cfg.DeclineHold))
	s.store.changed()
	s.cfg.Log.Warn("dhcpd: a client found its address in use; kept out of the pool", "mac", m.ClientHWAddr.String(), "addr", a, "for", s.cfg.DeclineHold)
}

// inform answers a client that configured its address itself with the
// options only (RFC 2131 4.3.5).
func (s *Server) inform(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if addrOf(m.ClientIPAddr) == (netip.Addr{}) {
		s.c.malformed.Add(1)
		return nil
	}
	return s.reply(m, dhcpv4.MessageTypeAck, netip.Addr{}, 0)
}

// hostname keeps a client's host name (option 12) if it is a plausible
// one: letters, digits, '-' and '_', at most 63 characters.
func hostname(h string) string {
	if len(h) == 0 || len(h) > 63 {
		return ""
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return ""
		}
	}
	return h
}

func (s *Server) encode() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool.sweep(s.cfg.Now())
	return encodeLeases(s.pool)
}

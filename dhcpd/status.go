package dhcpd

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// counters are the server's packet counts.
type counters struct {
	received, malformed, ignored, rateLimited, busy, panics      atomic.Uint64
	discover, offer, request, ack, nak, release, decline, inform atomic.Uint64
	conflicts, exhausted, unacked, otherReplies                  atomic.Uint64
}

// Counters is a snapshot of the counts for the status page.
type Counters struct {
	Received    uint64 `json:"received"`
	Malformed   uint64 `json:"malformed"`    // dropped: not a DHCP request we can parse
	Ignored     uint64 `json:"ignored"`      // message types a server does not answer
	RateLimited uint64 `json:"rate_limited"` // dropped: the client sent too many
	Busy        uint64 `json:"busy"`         // dropped: MaxInFlight packets in hand
	Panics      uint64 `json:"panics"`
	Discover    uint64 `json:"discover"`
	Offer       uint64 `json:"offer"`
	Request     uint64 `json:"request"`
	Ack         uint64 `json:"ack"`
	Nak         uint64 `json:"nak"`
	Release     uint64 `json:"release"`
	Decline     uint64 `json:"decline"`
	Inform      uint64 `json:"inform"`
	// Conflicts counts addresses that answered the probe; Exhausted
	// DISCOVERs left without an offer because the pool was full.
	Conflicts uint64 `json:"conflicts"`
	Exhausted uint64 `json:"exhausted"`
	// Writes counts lease file writes, WriteErrors failed ones; Unacked
	// counts ACKs not sent because their write failed.
	Writes      uint64 `json:"writes"`
	WriteErrors uint64 `json:"write_errors"`
	Unacked     uint64 `json:"unacked"`
	// OtherReplies counts replies seen from other DHCP servers.
	OtherReplies uint64 `json:"other_replies"`
}

// LeaseInfo is one lease as the status page shows it.
type LeaseInfo struct {
	IP       string    `json:"ip"`
	MAC      string    `json:"mac"`
	Hostname string    `json:"hostname,omitempty"`
	State    string    `json:"state"` // offered, bound, free
	Expires  time.Time `json:"expires"`
	Reserved bool      `json:"reserved,omitempty"`
}

// OtherServer is another DHCP server seen on the LAN.
type OtherServer struct {
	Addr     string    `json:"addr"`
	LastSeen time.Time `json:"last_seen"`
}

// Status is the server's state for the status page and the control API.
type Status struct {
	Interface string      `json:"interface"`
	Addr      string      `json:"addr"`
	Range     string      `json:"range"`
	PoolSize  int         `json:"pool_size"`
	Bound     int         `json:"bound"`
	Leases    []LeaseInfo `json:"leases"`
	Declined  []string    `json:"declined,omitempty"`
	Counters  Counters    `json:"counters"`
	// Detecting is true while the check for other servers runs;
	// OtherServers lists those that answered it or were seen since.
	Detecting    bool          `json:"detecting"`
	OtherServers []OtherServer `json:"other_servers,omitempty"`
}

// Addr returns the interface the server serves and the address (with
// its subnet) it serves from.
func (s *Server) Addr() (string, netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Interface, s.cfg.Addr
}

// Status returns a snapshot of the leases and counters.
func (s *Server) Status() Status {
	writes, werrs := s.store.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	st := Status{
		Interface: s.cfg.Interface,
		Addr:      s.cfg.Addr.String(),
		Range:     s.pool.start.String() + "-" + s.pool.end.String(),
		PoolSize:  s.pool.size(),
		Leases:    []LeaseInfo{},
		Detecting: s.detecting,
	}
	for _, l := range s.pool.sorted() {
		state := l.state.String()
		if !l.active(now) {
			state = "free"
		}
		if state == "bound" {
			st.Bound++
		}
		_, fixed := s.pool.reserve[l.addr]
		st.Leases = append(st.Leases, LeaseInfo{IP: l.addr.String(), MAC: l.mac.String(), Hostname: l.hostname,
			State: state, Expires: l.expires, Reserved: fixed})
	}
	for a, until := range s.pool.declined {
		if now.Before(until) {
			st.Declined = append(st.Declined, a.String())
		}
	}
	sort.Strings(st.Declined)
	for a, t := range s.others {
		st.OtherServers = append(st.OtherServers, OtherServer{Addr: a.String(), LastSeen: t})
	}
	sort.Slice(st.OtherServers, func(i, j int) bool { return st.OtherServers[i].Addr < st.OtherServers[j].Addr })
	c := &s.c
	st.Counters = Counters{
		Received: c.received.Load(), Malformed: c.malformed.Load(), Ignored: c.ignored.Load(),
		RateLimited: c.rateLimited.Load(), Busy: c.busy.Load(), Panics: c.panics.Load(),
		Discover: c.discover.Load(), Offer: c.offer.Load(), Request: c.request.Load(), Ack: c.ack.Load(),
		Nak: c.nak.Load(), Release: c.release.Load(), Decline: c.decline.Load(), Inform: c.inform.Load(),
		Conflicts: c.conflicts.Load(), Exhausted: c.exhausted.Load(), Writes: writes, WriteErrors: werrs, Unacked: c.unacked.Load(),
		OtherReplies: c.otherReplies.Load(),
	}
	return st
}

// Detected is closed when the check for other DHCP servers that
// ListenAndServe starts has ended; Status then tells what it found.
func (s *Server) Detected() <-chan struct{} { return s.detected }

// sawReply notes a BOOTREPLY that reached the server socket: an answer of
// another server to the probe of detect (sent as from a relay agent, so
// it comes to port 67), or a relayed reply of another server.
func (s *Server) sawReply(m *dhcpv4.DHCPv4, peer net.Addr) {
	from := addrOf(m.ServerIdentifier())
	if !from.IsValid() {
		if u, ok := peer.(*net.UDPAddr); ok {
			from = addrOf(u.IP)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !from.IsValid() || from == s.pool.server {
		return
	}
	s.c.otherReplies.Add(1)
	if _, seen := s.others[from]; !seen {
		s.cfg.Log.Warn("dhcpd: another DHCP server answers on this LAN; two servers hand out conflicting addresses",
			"server", from, "offered", m.YourIPAddr, "interface", s.cfg.Interface)
	}
	if len(s.others) < 16 {
		s.others[from] = s.cfg.Now()
	}
}

// detect sends a DISCOVER for a made-up client from the server socket, as
// a relay agent on the box's own address would (giaddr = the box), so
// that every other server on the LAN answers to port 67, where the serve
// loop sees the answers (sawReply). RFC 2131 4.1, 4.3.1.
func (s *Server) detect(conn net.PacketConn, window time.Duration) {
	defer close(s.detected)
	s.mu.Lock()
	s.detecting = true
	server, log := s.pool.server, s.cfg.Log
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.detecting = false
		n := len(s.others)
		s.mu.Unlock()
		if n == 0 {
			log.Info("dhcpd: no other DHCP server answered on the LAN")
		}
	}()
	m, err := dhcpv4.NewDiscovery(s.probeMAC, dhcpv4.WithGatewayIP(server.AsSlice()))
	if err != nil {
		return
	}
	m.HopCount = 1
	// Three tries across the window, as a client retransmits: one lost
	// packet must not hide a server.
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	t := time.NewTicker(window / 3)
	defer t.Stop()
	for {
		if _, err := conn.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: ServerPort}); err != nil {
			log.Warn("dhcpd: could not check for other DHCP servers", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// others returns the other servers seen so far (for tests).
func (s *Server) otherServers() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []netip.Addr
	for a := range s.others {
		out = append(out, a)
	}
	return out
}

// rateLimiter is a token bucket per client.
type rateLimiter struct {
	rate, burst float64
	clients     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate, burst int) *rateLimiter {
	return &rateLimiter{rate: float64(rate), burst: float64(burst), clients: map[string]*bucket{}}
}

// allow takes a token for client at now (called with the server's lock).
func (r *rateLimiter) allow(client string, now time.Time) bool {
	b := r.clients[client]
	if b == nil {
		if len(r.clients) >= maxRateClients {
			for k, v := range r.clients { // drop the full buckets: they are idle
				if v.tokens+now.Sub(v.last).Seconds()*r.rate >= r.burst {
					delete(r.clients, k)
				}
			}
			if len(r.clients) >= maxRateClients {
				return false
			}
		}
		b = &bucket{tokens: r.burst, last: now}
		r.clients[client] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * r.rate
	if b.tokens > r.burst {
		b.tokens = r.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Package nameservice is the NetBIOS name service of the box on 137/udp and
// 137/tcp (RFC 1001 15, with the packets of RFC 1002 4.2): a B-node that
// claims, defends and releases the box's own names by broadcast, and an
// NBNS (WINS server) that registers, refreshes, releases and resolves the
// names of the LAN's nodes, challenging the owner of a unique name before
// it is taken over (RFC 1001 15.2.2.2). Node status requests are answered
// with the box's names and the MAC address of the interface (RFC 1002
// 4.2.18).
//
// The server opens one UDP socket per interface, bound to the port on that
// device, and answers each request once, from the address of the interface
// it arrived on, to the request's source address and port. Packets from
// outside the interface's subnets are ignored unless allowed; every source
// has a rate limit; malformed packets are counted and never answered.
package nameservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"concierge/nbt/wire"
)

// Defaults of Config, the one place they are written: appliance/config
// reads them for its own defaults. RFC 1002 6 gives the broadcast retry
// values.
const (
	DefaultPort             = 137
	DefaultNameTTL          = 72 * time.Hour         // TTL of the box's own names in answers
	DefaultWINSMinTTL       = 5 * time.Minute        // shortest TTL granted to a registration
	DefaultWINSMaxTTL       = 24 * time.Hour         // longest TTL granted (and for TTL 0, "infinite")
	DefaultSaveInterval     = 15 * time.Minute       // at most one write of the table this often
	DefaultRateLimit        = 200                    // packets per second per source address
	DefaultRateBurst        = 400                    // bucket size per source address
	DefaultChallengeTimeout = 1 * time.Second        // wait for the owner's answer to a challenge
	DefaultChallengeTries   = 2                      // challenge queries before the owner counts as gone
	DefaultMaxNames         = 4096                   // WINS table entries
	DefaultMaxNamesPerOwner = 32                     // WINS names (unique or group memberships) per address
	DefaultMaxTCPConns      = 32                     // concurrent 137/tcp connections
	DefaultTCPIdle          = 30 * time.Second       // idle 137/tcp connections are closed
	DefaultCapLogInterval   = time.Minute            // at most one log line per kind of cap hit this often
	BcastRegRetries         = 3                      // RFC 1002 6: BCAST_REQ_RETRY_COUNT
	BcastRegInterval        = 250 * time.Millisecond // RFC 1002 6: BCAST_REQ_RETRY_TIMEOUT
	maxGroupMembers         = 64                     // addresses kept per group name
	maxDomainMembers        = 25                     // addresses kept for DOMAIN<1C>, as Windows WINS keeps
	maxTCPPerSource         = 4                      // 137/tcp connections per source address
	maxChallenges           = 32                     // challenges in flight
	maxRateSources          = 4096                   // source addresses tracked by the rate limit
)

// Errors of the server.
var (
	ErrClosed      = errors.New("nameservice: server closed")
	ErrNoInterface = errors.New("nameservice: no IPv4 interface with a broadcast address")
)

// Config are the server's settings; zero values mean the defaults above.
type Config struct {
	// Name and Workgroup are the box's NetBIOS name and workgroup; the
	// box claims NAME<00>, NAME<03>, NAME<20> (unique) and
	// WORKGROUP<00>, WORKGROUP<1E> (group).
	Name      string
	Workgroup string
	// Scope is the NetBIOS scope ID, usually empty.
	Scope string
	// ExtraNames are further unique names the box claims and defends
	// (the session gateways' names), in Scope.
	ExtraNames []wire.Name
	// Interfaces names the LAN interfaces; empty means every IPv4
	// interface that is up and has a broadcast address.
	Interfaces []string
	// Port is the UDP and TCP port (137).
	Port int
	// WINS turns the NBNS on.
	WINS bool
	// AllowRemote answers packets from outside the subnets of the
	// interface they arrived on.
	AllowRemote bool
	// NameTTL is the TTL of the box's own names.
	NameTTL time.Duration
	// WINSMinTTL and WINSMaxTTL bound the TTL granted to registrations
	// (RFC 1002 4.2.2: the NBNS chooses the TTL it grants); a request
	// for TTL 0 (infinite) gets WINSMaxTTL. Entries read back from
	// StateFile are held to WINSMaxTTL as well.
	WINSMinTTL, WINSMaxTTL time.Duration
	// StateFile keeps the WINS table across restarts; empty keeps it in
	// memory only. It is written at most once per SaveInterval and at
	// shutdown, and only when something changed.
	StateFile    string
	SaveInterval time.Duration
	// RateLimit is packets per second per source address, RateBurst the
	// bucket; a negative RateLimit turns the limit off.
	RateLimit, RateBurst int
	// ChallengeTimeout and ChallengeTries govern the challenge of the
	// owner of a unique name another node registers (RFC 1001 15.2.2.2).
	ChallengeTimeout time.Duration
	ChallengeTries   int
	// MaxNames bounds the WINS table; MaxNamesPerOwner bounds the names
	// one address may hold in it (unique names and group memberships),
	// so that one host cannot fill the table and lock the others out.
	// A registration over either bound is refused (RFC 1002 4.2.6:
	// RFS_ERR for the owner's bound, SRV_ERR for a full table) and
	// logged at most once per CapLogInterval.
	MaxNames         int
	MaxNamesPerOwner int
	CapLogInterval   time.Duration
	// MaxTCPConns bounds concurrent 137/tcp connections; TCPIdle closes
	// idle ones.
	MaxTCPConns int
	TCPIdle     time.Duration
	// NoTCP turns 137/tcp off (tests on loopback).
	NoTCP bool
	// Log receives the server's log; nil discards it.
	Log *slog.Logger

	// now is the clock (tests set it); nil is time.Now.
	now func() time.Time
	// onPacket, when tests set it, sees every packet that parsed before
	// it is handled.
	onPacket func(*wire.Packet)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	def(&c.NameTTL, DefaultNameTTL)
	def(&c.WINSMinTTL, DefaultWINSMinTTL)
	def(&c.WINSMaxTTL, DefaultWINSMaxTTL)
	if c.WINSMaxTTL < c.WINSMinTTL {
		c.WINSMaxTTL = c.WINSMinTTL
	}
	def(&c.SaveInterval, DefaultSaveInterval)
	def(&c.ChallengeTimeout, DefaultChallengeTimeout)
	def(&c.TCPIdle, DefaultTCPIdle)
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst <= 0 {
		c.RateBurst = max(DefaultRateBurst, c.RateLimit)
	}
	if c.ChallengeTries <= 0 {
		c.ChallengeTries = DefaultChallengeTries
	}
	if c.MaxNames <= 0 {
		c.MaxNames = DefaultMaxNames
	}
	if c.MaxNamesPerOwner <= 0 {
		c.MaxNamesPerOwner = DefaultMaxNamesPerOwner
	}
	def(&c.CapLogInterval, DefaultCapLogInterval)
	if c.now == nil {
		c.now = time.Now
	}
	if c.MaxTCPConns <= 0 {
		c.MaxTCPConns = DefaultMaxTCPConns
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Server is the name service.
type Server struct {
	cfg   Config
	log   *slog.Logger
	own   atomic.Pointer[[]*ownName] // replaced whole by SetNames
	setMu sync.Mutex                 // one SetNames at a time
	table *table
	rate  *limiter
	stats counters
	caps  *rareLog // log lines of refused registrations and capped TTLs

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	links     []*link
	pending   map[uint16]chan reply // our outstanding requests by transaction ID
	tcpConns  map[netip.Addr]int
	tcpTotal  int
	closed    bool
	started   bool
	claimed   chan struct{}
	ownAddrs  atomic.Pointer[map[netip.Addr]bool]
	challenge map[string]bool // names being challenged
}

// reply is a response to one of our own requests.
type reply struct {
	p   *wire.Packet
	src netip.AddrPort
}

// New checks the configuration and loads the WINS table.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: cfg.Log, pending: map[uint16]chan reply{}, tcpConns: map[netip.Addr]int{},
		claimed: make(chan struct{}), challenge: map[string]bool{}}
	own, err := ownNames(cfg.Name, cfg.Workgroup, cfg.Scope, cfg.ExtraNames)
	if err != nil {
		return nil, fmt.Errorf("nameservice: %w", err)
	}
	s.own.Store(&own)
	s.caps = newRareLog(cfg.CapLogInterval)
	s.table = newTable(cfg.MaxNames, cfg.MaxNamesPerOwner, cfg.WINSMinTTL, cfg.WINSMaxTTL)
	s.table.lastSave = cfg.now() // the first write waits one interval too
	if cfg.StateFile != "" {
		n, err := s.table.load(cfg.StateFile, cfg.now())
		if err != nil {
			// A table that cannot be read must not keep the box from
			// starting: set it aside and let the clients register again
			// (they refresh within their TTL).
			bad := cfg.StateFile + ".bad"
			os.Rename(cfg.StateFile, bad)
			s.log.Error("nbt: WINS table unreadable; starting with an empty one", "err", err, "moved_to", bad)
			s.table = newTable(cfg.MaxNames, cfg.MaxNamesPerOwner, cfg.WINSMinTTL, cfg.WINSMaxTTL)
			s.table.lastSave = cfg.now()
		}
		if n > 0 {
			s.log.Info("nbt: WINS table loaded", "names", n, "file", cfg.StateFile)
		}
	}
	s.rate = newLimiter(cfg.RateLimit, cfg.RateBurst)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	m := map[netip.Addr]bool{}
	s.ownAddrs.Store(&m)
	return s, nil
}

// ListenAndServe opens a socket on every configured interface, claims the
// box's names and serves in the background until Shutdown or Close. It
// returns once the sockets are open.
func (s *Server) ListenAndServe() error {
	ifs, err := Interfaces(s.cfg.Interfaces)
	if err != nil {
		return err
	}
	var links []*link
	for _, ifc := range ifs {
		l, err := listen(ifc, s.cfg.Port, !s.cfg.NoTCP)
		if err != nil {
			for _, l := range links {
				l.close()
			}
			return err
		}
		links = append(links, l)
	}
	return s.serve(links)
}

// Serve serves on one already open packet connection as the given
// interface (tests use a loopback socket). Broadcasts for the interface go
// to ifc.Broadcast at the connection's own port.
func (s *Server) Serve(pc net.PacketConn, ifc Interface) error {
	port := s.cfg.Port
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		port = ua.Port
	}
	return s.serve([]*link{{ifc: ifc, pc: pc, port: port}})
}

func (s *Server) serve(links []*link) error {
	s.mu.Lock()
	if s.closed || s.started {
		s.mu.Unlock()
		for _, l := range links {
			l.close()
		}
		return ErrClosed
	}
	s.started = true
	s.links = links
	m := map[netip.Addr]bool{}
	for _, l := range links {
		m[l.ifc.Addr] = true
	}
	s.ownAddrs.Store(&m)
	s.mu.Unlock()
	for _, l := range links {
		s.log.Info("nbt: listening", "interface", l.ifc.Name, "addr", l.ifc.Addr, "broadcast", l.ifc.Broadcast, "mac", l.ifc.MAC.String())
		for range readers {
			s.wg.Add(1)
			go s.readLoop(l)
		}
		if l.tcp != nil {
			s.wg.Add(1)
			go s.acceptLoop(l)
		}
	}
	s.wg.Add(2)
	go s.claimAll()
	go s.housekeeping()
	return nil
}

// readers is the number of goroutines reading each UDP socket. It must be
// one: a reader polls without sleeping for a moment after it answered,
// and a second reader parked in the poller would hold the descriptor's
// read lock against those polls.
const readers = 1

// Claimed is closed once the box's names are claimed or in conflict.
func (s *Server) Claimed() <-chan struct{} { return s.claimed }

// Shutdown releases the box's names by broadcast, saves the WINS table and
// closes the sockets. Challenges in flight end when ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	started := s.started
	s.mu.Unlock()
	if started {
		s.releaseAll()
	}
	return s.close(ctx)
}

// Close closes the sockets at once without releasing names; the table is
// still saved.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.close(ctx)
}

func (s *Server) close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	links := s.links
	s.mu.Unlock()
	s.cancel()
	for _, l := range links {
		l.close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if serr := s.save(true); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// save writes the WINS table when it changed; force ignores the interval.
func (s *Server) save(force bool) error {
	if s.cfg.StateFile == "" {
		return nil
	}
	n, wrote, err := s.table.save(s.cfg.StateFile, s.cfg.now(), force, s.cfg.SaveInterval)
	if err != nil {
		s.log.Error("nbt: saving the WINS table", "file", s.cfg.StateFile, "err", err)
		return fmt.Errorf("nameservice: %w", err)
	}
	if wrote {
		s.log.Debug("nbt: WINS table saved", "names", n)
	}
	return nil
}

// housekeeping expires names and saves the table now and then.
func (s *Server) housekeeping() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			now := s.cfg.now()
			if n := s.table.expire(now); n > 0 {
				s.log.Debug("nbt: WINS names expired", "count", n)
			}
			s.rate.sweep(now)
			s.save(false)
		}
	}
}

// newID returns a random transaction ID that is not pending, and
// registers ch for its responses.
func (s *Server) newID(ch chan reply) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		id := uint16(rand.Uint32())
		if _, ok := s.pending[id]; !ok && id != 0 {
			s.pending[id] = ch
			return id
		}
	}
}

func (s *Server) dropID(id uint16) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// deliver hands a response to the request that is waiting for it.
func (s *Server) deliver(p *wire.Packet, src netip.AddrPort) bool {
	s.mu.Lock()
	ch, ok := s.pending[p.ID]
	s.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case ch <- reply{p, src}:
	default:
	}
	return true
}

func (s *Server) isOwnAddr(a netip.Addr) bool { return (*s.ownAddrs.Load())[a] }

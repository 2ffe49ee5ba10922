// Package datagram is the NetBIOS datagram service on 138/udp (RFC 1001
// 17, RFC 1002 4.4 and 5.3) for the box as a B-node: it delivers
// DIRECT_UNIQUE, DIRECT_GROUP and BROADCAST datagrams to in-process
// listeners, reassembling fragments within bounds (RFC 1002 5.3.3), answers
// a DIRECT_UNIQUE datagram for a name the box does not hold with DATAGRAM
// ERROR 0x82, answers DATAGRAM QUERY REQUESTs from what the name service
// knows, and sends datagrams in fragments of at most 576 bytes. As the
// NBDD of the box's WINS clients (RFC 1001 17.3, Config.NBDD) it relays
// the group and broadcast datagrams P-nodes send it to the members the
// WINS table knows (relay.go).
package datagram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"concierge/nbt/wire"
)

// Defaults of Config.
const (
	DefaultPort              = 138
	DefaultReassemblyTimeout = 2 * time.Second // RFC 1002 6: FRAGMENT_TO
	DefaultMaxPending        = 32              // datagrams being reassembled
	DefaultMaxPendingBytes   = 256 << 10       // their bytes together
	DefaultQueueLen          = 64              // datagrams waiting for a listener's Recv
	DefaultMaxRelay          = 64              // NBDD: members one datagram is relayed to
	DefaultResolveTimeout    = 2 * time.Second // Send: a name query on the LAN
)

// Errors.
var (
	ErrClosed    = errors.New("datagram: server closed")
	ErrListening = errors.New("datagram: already listening on the name")
	ErrNotFound  = errors.New("datagram: name not found")
)

// Config are the service's settings; zero values mean the defaults.
type Config struct {
	// Addr is the box's LAN address (SOURCE_IP of what it sends);
	// Broadcast is where broadcast and group datagrams go.
	Addr, Broadcast netip.Addr
	// Port is where datagrams are sent (138).
	Port int
	// Holds reports whether the box holds a name; Lookup resolves one
	// (the name service's Holds and Lookup).
	Holds  func(wire.Name) bool
	Lookup func(wire.Name) (addrs []netip.Addr, group bool, ok bool)
	// Resolve, when set, is what Send uses instead of Lookup: it may ask
	// the LAN (the name service's Resolve), within ResolveTimeout.
	Resolve        func(context.Context, wire.Name) (addrs []netip.Addr, group bool, err error)
	ResolveTimeout time.Duration

	// NBDD turns on the datagram distribution role (the box is the WINS
	// server): Members returns the WINS table's members of a group
	// name, Nodes every address the table knows (at most max); a
	// datagram is relayed to at most MaxRelay of them.
	NBDD     bool
	Members  func(wire.Name) []netip.Addr
	Nodes    func(max int) []netip.Addr
	MaxRelay int

	ReassemblyTimeout time.Duration
	MaxPending        int
	MaxPendingBytes   int
	QueueLen          int

	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Port <= 0 {
		c.Port = DefaultPort
	}
	if c.ReassemblyTimeout <= 0 {
		c.ReassemblyTimeout = DefaultReassemblyTimeout
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxRelay <= 0 {
		c.MaxRelay = DefaultMaxRelay
	}
	if c.ResolveTimeout <= 0 {
		c.ResolveTimeout = DefaultResolveTimeout
	}
	if c.Members == nil {
		c.Members = func(wire.Name) []netip.Addr { return nil }
	}
	if c.Nodes == nil {
		c.Nodes = func(int) []netip.Addr { return nil }
	}
	if c.Holds == nil {
		c.Holds = func(wire.Name) bool { return false }
	}
	if c.Lookup == nil {
		c.Lookup = func(wire.Name) ([]netip.Addr, bool, bool) { return nil, false, false }
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Message is one whole datagram delivered to a listener.
type Message struct {
	Type   uint8 // wire.DgmDirectUnique, DgmDirectGroup or DgmBroadcast
	Source wire.Name
	From   netip.AddrPort // SOURCE_IP and SOURCE_PORT
	Dest   wire.Name
	Data   []byte
}

// Listener receives the datagrams sent to one name.
type Listener struct {
	srv  *Server
	name wire.Name
	ch   chan Message
	once sync.Once
	done chan struct{}
}

// Recv returns the next datagram, or ctx's error, or ErrClosed.
func (l *Listener) Recv(ctx context.Context) (Message, error) {
	select {
	case m := <-l.ch:
		return m, nil
	case <-l.done:
		return Message{}, ErrClosed
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Close stops listening.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.srv.mu.Lock()
		delete(l.srv.listeners, key(l.name))
		l.srv.mu.Unlock()
		close(l.done)
	})
	return nil
}

func key(n wire.Name) string { return string(n.Label[:]) + "." + n.Scope }

// pending is a datagram being reassembled.
type pending struct {
	first   *wire.Datagram
	data    []byte
	started time.Time
}

type pendingKey struct {
	ip netip.Addr
	id uint16
}

// Server is the datagram service.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	pc        net.PacketConn
	local     uint16 // pc's port
	listeners map[string]*Listener
	pending   map[pendingKey]*pending
	pendBytes int
	nextID    uint16
	closed    bool
	ready     chan struct{} // closed when Serve has its socket

	c counters
}

type counters struct {
	received, delivered, fragments, reassembled, malformed, errorsSent, errorsReceived atomic.Uint64
	noListener, queueFull, reassemblyDropped, queries, sent, sendFailed, panics        atomic.Uint64
	relayedIn, relayedOut, relayCut, noMembers                                         atomic.Uint64
}

// New returns a server with cfg.
func New(cfg Config) *Server {
	cfg.setDefaults()
	return &Server{cfg: cfg, log: cfg.Log, listeners: map[string]*Listener{}, pending: map[pendingKey]*pending{},
		ready: make(chan struct{})}
}

// Ready is closed once Serve has its socket and Send can be used.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Listen starts delivering datagrams for name to the returned listener.
func (s *Server) Listen(name wire.Name) (*Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if _, ok := s.listeners[key(name)]; ok {
		return nil, fmt.Errorf("%w: %s", ErrListening, name)
	}
	l := &Listener{srv: s, name: name, ch: make(chan Message, s.cfg.QueueLen), done: make(chan struct{})}
	s.listeners[key(name)] = l
	return l, nil
}

// Serve reads datagrams from pc until Close. A server closed already (or
// serving another socket) closes pc and returns ErrClosed, so that a
// socket handed to a server stopped just after its start is not left
// holding the port.
func (s *Server) Serve(pc net.PacketConn) error {
	s.mu.Lock()
	if s.closed || s.pc != nil {
		s.mu.Unlock()
		pc.Close()
		return ErrClosed
	}
	s.pc = pc
	close(s.ready)
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		s.local = ua.AddrPort().Port()
	}
	s.mu.Unlock()
	buf := make([]byte, wire.MaxDatagramRecv+1)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return ErrClosed
			}
			s.log.Warn("nbdgm: read", "err", err)
			continue
		}
		ua, _ := from.(*net.UDPAddr)
		if ua == nil {
			continue
		}
		src := ua.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.handle(buf[:n], src)
	}
}

// Close stops the server and every listener.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	pc := s.pc
	ls := s.listeners
	s.listeners = map[string]*Listener{}
	s.mu.Unlock()
	for _, l := range ls {
		l.once.Do(func() { close(l.done) })
	}
	if pc != nil {
		return pc.Close()
	}
	return nil
}

// handle processes one datagram under a recover.
func (s *Server) handle(msg []byte, src netip.AddrPort) {
	defer func() {
		if r := recover(); r != nil {
			s.c.panics.Add(1)
			s.log.Error("nbdgm: panic handling a datagram", "panic", r, "from", src.String(), "stack", string(debug.Stack()))
		}
	}()
	s.mu.Lock()
	local := s.local
	s.mu.Unlock()
	if src.Addr() == s.cfg.Addr && src.Port() == local {
		return // our own broadcast looped back
	}
	s.c.received.Add(1)
	if len(msg) > wire.MaxDatagramRecv {
		s.c.malformed.Add(1)
		return
	}
	d, err := wire.ParseDatagram(msg)
	if err != nil {
		// No answer to what does not parse: it could be spoofed.
		s.c.malformed.Add(1)
		s.log.Debug("nbdgm: malformed datagram", "from", src.String(), "err", err)
		return
	}
	switch {
	case d.IsData():
		s.relay(d, msg, src)
		s.data(d, src)
	case d.Type == wire.DgmQueryRequest:
		s.c.queries.Add(1)
		// RFC 1002 4.4.4: positive when the name is known here.
		r := wire.Datagram{Type: wire.DgmQueryNegative, ID: d.ID, SourceIP: s.cfg.Addr, SourcePort: uint16(s.cfg.Port), Dest: d.Dest}
		if _, _, ok := s.cfg.Lookup(d.Dest); ok {
			r.Type = wire.DgmQueryPositive
		}
		s.sendTo(&r, src)
	case d.Type == wire.DgmError:
		s.c.errorsReceived.Add(1)
		s.log.Info("nbdgm: datagram error received", "from", src.String(), "code", fmt.Sprintf("%#02x", d.Code))
	}
}

func (s *Server) data(d *wire.Datagram, src netip.AddrPort) {
	s.mu.Lock()
	l := s.listeners[key(d.Dest)]
	s.mu.Unlock()
	if l == nil {
		if d.Type == wire.DgmDirectUnique && !s.cfg.Holds(d.Dest) {
			// RFC 1002 4.4.3, 5.3.3: destination name not present.
			s.c.errorsSent.Add(1)
			e := wire.Datagram{Type: wire.DgmError, Flags: wire.DgmFlagFirst, ID: d.ID, SourceIP: s.cfg.Addr,
				SourcePort: uint16(s.cfg.Port), Code: wire.DgmErrNotPresent}
			s.sendTo(&e, src)
			return
		}
		s.c.noListener.Add(1)
		return
	}
	data := d.Data
	if !d.First() || d.More() {
		s.c.fragments.Add(1)
		var ok bool
		if data, ok = s.reassemble(d); !ok {
			return
		}
		s.c.reassembled.Add(1)
	}
	m := Message{Type: d.Type, Source: d.Source, Dest: d.Dest, From: netip.AddrPortFrom(d.SourceIP, d.SourcePort),
		Data: append([]byte(nil), data...)}
	select {
	case l.ch <- m:
		s.c.delivered.Add(1)
	default:
		s.c.queueFull.Add(1)
	}
}

// reassemble adds a fragment (RFC 1002 5.3.3: fragments of one datagram
// share SOURCE_IP and DGM_ID and arrive in order); it returns the user
// data when the last one arrived. Pending datagrams are bounded in
// number, bytes and age; a fragment out of order drops its datagram.
func (s *Server) reassemble(d *wire.Datagram) ([]byte, bool) {
	now := time.Now()
	k := pendingKey{d.SourceIP, d.ID}
	s.mu.Lock()
	defer s.mu.Unlock()
	for pk, p := range s.pending {
		if now.Sub(p.started) > s.cfg.ReassemblyTimeout {
			s.dropPending(pk, p)
		}
	}
	p := s.pending[k]
	if d.First() {
		if p != nil {
			s.dropPending(k, p)
		}
		if len(s.pending) >= s.cfg.MaxPending || s.pendBytes+len(d.Data) > s.cfg.MaxPendingBytes {
			s.c.reassemblyDropped.Add(1)
			return nil, false
		}
		p = &pending{first: d, data: append([]byte(nil), d.Data...), started: now}
		s.pending[k] = p
		s.pendBytes += len(d.Data)
		return nil, false
	}
	if p == nil {
		s.c.reassemblyDropped.Add(1)
		return nil, false
	}
	if int(d.Offset) != len(p.data) || !p.first.Source.Equal(d.Source) || !p.first.Dest.Equal(d.Dest) ||
		s.pendBytes+len(d.Data) > s.cfg.MaxPendingBytes {
		s.dropPending(k, p)
		return nil, false
	}
	p.data = append(p.data, d.Data...)
	s.pendBytes += len(d.Data)
	if d.More() {
		return nil, false
	}
	delete(s.pending, k)
	s.pendBytes -= len(p.data)
	return p.data, true
}

func (s *Server) dropPending(k pendingKey, p *pending) {
	delete(s.pending, k)
	s.pendBytes -= len(p.data)
	s.c.reassemblyDropped.Add(1)
}

func (s *Server) sendTo(d *wire.Datagram, to netip.AddrPort) error {
	b, err := d.Pack()
	if err != nil {
		return err
	}
	return s.sendRaw(b, to)
}

// sendRaw writes one encoded datagram to to.
func (s *Server) sendRaw(b []byte, to netip.AddrPort) error {
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc == nil {
		return ErrClosed
	}
	if _, err := pc.WriteTo(b, net.UDPAddrFromAddrPort(to)); err != nil {
		s.c.sendFailed.Add(1)
		return fmt.Errorf("datagram: send to %s: %w", to, err)
	}
	s.c.sent.Add(1)
	return nil
}

// Send sends data from src to dst: to each address of a unique name as
// DIRECT_UNIQUE datagrams, to a group name by broadcast as DIRECT_GROUP
// (RFC 1001 17.2, a B-node), in fragments as needed. The name is
// resolved by Config.Resolve when set (the box's names, the WINS table,
// then a query on the LAN), else by Lookup; it fails with ErrNotFound
// for a name nobody answered for.
func (s *Server) Send(src, dst wire.Name, data []byte) error {
	addrs, group, err := s.resolve(dst)
	if err != nil {
		return err
	}
	if group {
		return s.send(wire.DgmDirectGroup, src, dst, data, s.cfg.Broadcast)
	}
	for _, a := range addrs {
		if err := s.send(wire.DgmDirectUnique, src, dst, data, a); err != nil {
			return err
		}
	}
	return nil
}

// resolve finds dst's addresses for Send.
func (s *Server) resolve(dst wire.Name) ([]netip.Addr, bool, error) {
	if s.cfg.Resolve == nil {
		addrs, group, ok := s.cfg.Lookup(dst)
		if !ok {
			return nil, false, fmt.Errorf("%w: %s", ErrNotFound, dst)
		}
		return addrs, group, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ResolveTimeout)
	defer cancel()
	addrs, group, err := s.cfg.Resolve(ctx, dst)
	if err != nil || len(addrs) == 0 {
		return nil, false, fmt.Errorf("%w: %s (%v)", ErrNotFound, dst, err)
	}
	return addrs, group, nil
}

// SendGroup broadcasts data to a group name as DIRECT_GROUP datagrams
// (browse announcements to WORKGROUP<1D>).
func (s *Server) SendGroup(src, dst wire.Name, data []byte) error {
	return s.send(wire.DgmDirectGroup, src, dst, data, s.cfg.Broadcast)
}

func (s *Server) send(typ uint8, src, dst wire.Name, data []byte, to netip.Addr) error {
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	s.mu.Unlock()
	frags, err := wire.Fragment(wire.Datagram{Type: typ, ID: id, SourceIP: s.cfg.Addr, SourcePort: uint16(s.cfg.Port),
		Source: src, Dest: dst}, data)
	if err != nil {
		return fmt.Errorf("datagram: %w", err)
	}
	for _, f := range frags {
		if err := s.sendTo(f, netip.AddrPortFrom(to, uint16(s.cfg.Port))); err != nil {
			return err
		}
	}
	return nil
}

// Counters returns the service's counters by name, for the status page.
func (s *Server) Counters() map[string]uint64 {
	c := &s.c
	return map[string]uint64{
		"received": c.received.Load(), "delivered": c.delivered.Load(), "fragments": c.fragments.Load(),
		"reassembled": c.reassembled.Load(), "malformed": c.malformed.Load(), "errors_sent": c.errorsSent.Load(),
		"errors_received": c.errorsReceived.Load(), "no_listener": c.noListener.Load(), "queue_full": c.queueFull.Load(),
		"reassembly_dropped": c.reassemblyDropped.Load(), "queries": c.queries.Load(), "sent": c.sent.Load(),
		"send_failed": c.sendFailed.Load(), "panics": c.panics.Load(),
		"nbdd_received": c.relayedIn.Load(), "nbdd_relayed": c.relayedOut.Load(), "nbdd_cut": c.relayCut.Load(),
		"nbdd_no_members": c.noMembers.Load(),
	}
}

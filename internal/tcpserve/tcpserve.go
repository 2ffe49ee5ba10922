// Package tcpserve is the TCP server skeleton under the SMTP and POP3
// servers: the set of listeners, an accept loop that backs off on errors,
// connection pools (internal/connlimit) with a "try later" answer for the
// excess, one goroutine per connection that recovers a panic and ends only
// that connection, the tracking of open connections, and a two-step
// shutdown (stop accepting and ask every handler to finish; after a
// bounded wait, close what is left).
//
// The protocol packages keep their own faces (New…, Serve, Shutdown,
// Close, Configure) and hand this package a Handler per port.
package tcpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"concierge/internal/connlimit"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("tcpserve: server closed")

// Timing of the skeleton.
const (
	// MinAcceptDelay and MaxAcceptDelay bound the back-off after a
	// failed Accept (EMFILE and the like): the delay doubles from the
	// first to the second and is reset by a good Accept.
	MinAcceptDelay = 5 * time.Millisecond
	MaxAcceptDelay = time.Second
	// RefuseTimeout bounds writing the "too many connections" answer.
	RefuseTimeout = 5 * time.Second
	// ForceWait bounds the wait for handlers after Shutdown's context
	// ran out and their connections were closed.
	ForceWait = 5 * time.Second
)

// Conn is an accepted connection as its handler sees it.
type Conn struct {
	net.Conn
	// ID names the connection in the log; unique within the Server.
	ID string
	// IP is the client address (the zero Addr for a net.Pipe).
	IP netip.Addr
	// Log carries the connection's attributes (port, session, remote).
	// The handler may replace it with one that has more (the user,
	// say); a panic is logged through it.
	Log *slog.Logger
}

// Handler serves one connection in the connection's own goroutine; the
// connection is closed and its slot released when it returns. ctx is
// cancelled when the server starts to shut down: the handler should then
// end at its next command (context.AfterFunc can wake a blocked read).
type Handler func(ctx context.Context, c *Conn)

// Port says how to serve the connections of a listener.
type Port struct {
	// Name is the port's name in the log ("smtp", "pop3", ...).
	Name string
	// Pool counts the port's connections; ports may share one.
	Pool *connlimit.Pool
	// Handle serves an accepted connection.
	Handle Handler
	// Refuse answers a connection over the pool's limits (why says
	// which), typically with the protocol's "try again later"; the
	// write has RefuseTimeout, and the connection is closed after it.
	// Nil closes it silently.
	Refuse func(c net.Conn, why error)
}

// Server accepts connections on any number of listeners and tracks them
// until they end. The zero value is ready to use; set Log before Serve.
type Server struct {
	Log *slog.Logger

	// Panics counts recovered panics, for the status page.
	Panics atomic.Uint64

	once      sync.Once
	drain     context.Context // cancelled at Shutdown and Close
	stopDrain context.CancelFunc
	done      chan struct{} // closed at Shutdown and Close

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{}
	closing   bool
	wg        sync.WaitGroup // handler goroutines
	nextID    atomic.Uint64
}

func (s *Server) init() {
	s.once.Do(func() {
		s.drain, s.stopDrain = context.WithCancel(context.Background())
		s.done = make(chan struct{})
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*Conn]struct{}{}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
	})
}

// Serve accepts connections on l and serves them as p says, until l is
// closed (it returns nil) or the server shuts down (ErrServerClosed).
// Accept errors other than a closed listener are logged and retried
// after a back-off.
func (s *Server) Serve(l net.Listener, p *Port) error {
	s.init()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err == nil {
			delay = 0
			s.ServeConn(c, p)
			continue
		}
		select {
		case <-s.done:
			return ErrServerClosed
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		delay = nextDelay(delay)
		s.Log.Warn("accept failed; retrying", "port", p.Name, "addr", l.Addr().String(), "err", err, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return ErrServerClosed
		}
	}
}

// nextDelay is the back-off after another failed Accept.
func nextDelay(d time.Duration) time.Duration {
	return min(max(2*d, MinAcceptDelay), MaxAcceptDelay)
}

// ServeConn serves one connection accepted elsewhere (tests use
// net.Pipe), in the background.
func (s *Server) ServeConn(c net.Conn, p *Port) {
	s.init()
	ip := connlimit.RemoteIP(c)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	if err := p.Pool.Acquire(ip); err != nil {
		s.wg.Add(1)
		s.mu.Unlock()
		s.Log.Info("connection refused", "port", p.Name, "remote", c.RemoteAddr().String(), "why", err)
		go s.refuse(c, p, err)
		return
	}
	id := strconv.FormatUint(s.nextID.Add(1), 36)
	tc := &Conn{Conn: c, ID: id, IP: ip,
		Log: s.Log.With("port", p.Name, "session", id, "remote", c.RemoteAddr().String())}
	s.conns[tc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go s.run(tc, p)
}

func (s *Server) refuse(c net.Conn, p *Port, why error) {
	defer s.wg.Done()
	defer c.Close()
	defer s.recoverPanic(&Conn{Conn: c, Log: s.Log.With("port", p.Name, "remote", c.RemoteAddr().String())})
	if p.Refuse != nil {
		c.SetDeadline(time.Now().Add(RefuseTimeout))
		p.Refuse(c, why)
	}
}

// run serves one counted connection.
func (s *Server) run(c *Conn, p *Port) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		p.Pool.Release(c.IP)
		s.wg.Done()
	}()
	defer s.recoverPanic(c)
	p.Handle(s.drain, c)
}

// recoverPanic, deferred, turns a panic into a log line with the stack
// and the end of the one connection it happened on.
func (s *Server) recoverPanic(c *Conn) {
	r := recover()
	if r == nil {
		return
	}
	s.Panics.Add(1)
	c.Log.Error("panic: connection closed", "panic", r, "stack", string(debug.Stack()))
	netConn(c.Conn).Close()
}

// netConn is the network connection under c (a *tls.Conn's is closed
// without waiting for a write in progress).
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// Addrs returns the addresses of the open listeners.
func (s *Server) Addrs() []net.Addr {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// CloseListener closes the listener with the given address (when a port
// changes); its connections go on.
func (s *Server) CloseListener(addr net.Addr) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		if l.Addr().String() == addr.String() {
			l.Close()
		}
	}
}

// Conns is the number of connections being served.
func (s *Server) Conns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// stop closes the listeners and tells every handler to finish.
func (s *Server) stop() {
	s.init()
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.stopDrain()
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		netConn(c.Conn).Close()
	}
}

// Shutdown stops accepting, cancels the handlers' context and waits for
// them until ctx is done; then it closes the connections left, waits at
// most ForceWait for their handlers, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.closeConns()
	t := time.NewTimer(ForceWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.Log.Warn("shutdown: handlers still running after their connections were closed")
	}
	return ctx.Err()
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.stop()
	s.closeConns()
	return nil
}

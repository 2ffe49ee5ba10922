// Package smtpd is the box's SMTP server (RFC 5321) on
// github.com/emersion/go-smtp: the MX for the office's domains on port 25,
// submission with STARTTLS and AUTH (RFC 6409, RFC 3207, RFC 4954) on 587
// and implicit TLS (RFC 8314) on 465. It decides who may send what to whom
// (no open relay), and hands accepted mail to the store, which answers
// only once the message is on disk.
package smtpd

import (
	"context"
	"crypto/tls"
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

	"github.com/emersion/go-smtp"

	"concierge/internal/connlimit"
	"concierge/internal/mailaddr"
	"concierge/internal/tcpserve"
	"concierge/smtpd/store"
)

// ListenerKind says what a port is for.
type ListenerKind int

// Listener kinds.
const (
	MX            ListenerKind = iota // port 25: mail for local domains; relay only for trusted clients
	Submission                        // port 587: STARTTLS, then AUTH (or a relay network)
	SubmissionTLS                     // port 465: implicit TLS, then AUTH
)

func (k ListenerKind) String() string {
	return [...]string{"smtp", "submission", "submissions"}[k]
}

// Directory answers the server's questions about addresses and users; the
// appliance implements it over its configuration.
type Directory interface {
	// IsLocalDomain reports whether mail for domain is delivered here.
	IsLocalDomain(domain string) bool
	// Lookup resolves an address at a local domain into local users
	// and remote addresses (from aliases); ok is false when the address
	// does not exist.
	Lookup(a mailaddr.Address) (users, remote []string, ok bool)
	// CanSendAs reports whether user may use a as envelope sender.
	CanSendAs(user string, a mailaddr.Address) bool
	// Authenticate checks a login (a user name or an address of the
	// user) and its password from the client at ip, and returns the
	// user. Its error matches authlimit.ErrTryLater when the login is
	// refused for now (answered 454), else the credentials are wrong.
	Authenticate(ctx context.Context, login, password string, ip netip.Addr) (user string, err error)
	// Maildir is the Maildir directory of a local user.
	Maildir(user string) string
}

// Settings are the parts of the server that may change while it runs.
// Zero limits take the defaults in defaults.go.
type Settings struct {
	Hostname        string // FQDN for the banner and Received: headers
	Dir             Directory
	RelayNetworks   []netip.Prefix // may relay without AUTH
	MaxMessageBytes int64
	MaxRecipients   int
	IdleTimeout     time.Duration
	// MaxConns, MaxConnsPerIP and MaxConnsPerNet cap concurrent
	// connections overall, per client address and per client network
	// (a /24 or /64, see connlimit.Network), in each of two pools: port
	// 25, and the submission ports 587 and 465 together, so that a
	// flood on port 25 leaves submission alone. Zero: no cap.
	MaxConns, MaxConnsPerIP, MaxConnsPerNet int
	TLSConfig                               *tls.Config // nil: no STARTTLS, no AUTH, no port 465
	DropDir                                 string
	// Postmaster is the address a bare "RCPT TO:<postmaster>" means.
	Postmaster string
	// StartTimeout is the silence allowed before the client starts a
	// transaction or logs in (0: DefaultStartTimeout; never more than
	// IdleTimeout).
	StartTimeout time.Duration
	// AllowOutsideLocalSenders turns off the check that refuses mail on
	// port 25 from a client outside the relay networks whose envelope
	// sender is one of the office's own addresses.
	AllowOutsideLocalSenders bool
	// Spool, when set, holds mail for relay domains until ETRN and hears
	// of SMTP traffic (a dial-up link's idle timer); see etrn.go.
	Spool Spool
}

func (set *Settings) limits() connlimit.Limits {
	return connlimit.Limits{Total: set.MaxConns, PerAddr: set.MaxConnsPerIP, PerNet: set.MaxConnsPerNet}
}

// Limits that are not settings.
const (
	// WriteTimeout bounds sending one reply.
	WriteTimeout = 2 * time.Minute
)

// Server runs the SMTP listeners of the box.
type Server struct {
	Store *store.Store
	Log   *slog.Logger

	settings atomic.Pointer[Settings]

	tcp   tcpserve.Server
	mx    connlimit.Pool // port 25
	sub   connlimit.Pool // ports 587 and 465
	ports map[ListenerKind]*tcpserve.Port

	mu      sync.Mutex
	lib     map[ListenerKind]*libServer
	closing bool

	// Counters for the status page.
	Accepted, Rejected, Messages atomic.Uint64
}

// libServer is one go-smtp server fed by our accept loop.
type libServer struct {
	srv *smtp.Server
	ch  *chanListener
}

// New returns a server; call Configure before Serve.
func New(st *store.Store, set *Settings, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		Store: st, Log: log,
		lib: map[ListenerKind]*libServer{},
	}
	s.tcp.Log = log
	s.ports = map[ListenerKind]*tcpserve.Port{}
	for _, k := range []ListenerKind{MX, Submission, SubmissionTLS} {
		pool := &s.sub
		if k == MX {
			pool = &s.mx
		}
		s.ports[k] = &tcpserve.Port{Name: k.String(), Pool: pool, Handle: s.handler(k), Refuse: s.refuse}
	}
	s.Configure(set)
	return s
}

func (s *Server) log() *slog.Logger { return s.Log }

// Panics is the number of sessions that ended in a recovered panic.
func (s *Server) Panics() uint64 { return s.tcp.Panics.Load() }

// Configure applies new settings. Sessions in progress keep the library
// server they started on; new connections get one built from set.
func (s *Server) Configure(set *Settings) {
	set = set.withDefaults()
	s.settings.Store(set)
	s.mx.SetLimits(set.limits())
	s.sub.SetLimits(set.limits())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	for _, k := range []ListenerKind{MX, Submission, SubmissionTLS} {
		old := s.lib[k]
		ls := &libServer{srv: s.newLib(k, set), ch: newChanListener()}
		s.lib[k] = ls
		go ls.srv.Serve(ls.ch)
		if old != nil {
			old.ch.Close()
			go old.srv.Shutdown(context.Background())
		}
	}
}

func (s *Server) newLib(kind ListenerKind, set *Settings) *smtp.Server {
	ls := smtp.NewServer(&backend{s: s, kind: kind})
	ls.Domain = set.Hostname
	ls.MaxMessageBytes = set.MaxMessageBytes
	ls.MaxRecipients = set.MaxRecipients
	// Message lines may be long (RFC 5322 2.1.1 is often ignored by
	// senders); command lines are limited by the front end.
	ls.MaxLineLength = 64 << 10
	ls.ReadTimeout = 0 // the front end refreshes an idle deadline per read
	ls.WriteTimeout = WriteTimeout
	ls.EnableSMTPUTF8 = true
	ls.EnableDSN = true // RFC 3461: recorded in the queue envelope (envelope.go)
	// TLS is run by the front end, so the library never sees a
	// *tls.Conn; AUTH is refused there on plaintext connections.
	ls.AllowInsecureAuth = true
	ls.ErrorLog = slogLogger{s.Log.With("port", kind.String()), &s.tcp.Panics}
	return ls
}

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(kind ListenerKind, l net.Listener) error {
	err := s.tcp.Serve(l, s.ports[kind])
	if errors.Is(err, tcpserve.ErrServerClosed) {
		return smtp.ErrServerClosed
	}
	return err
}

// ListenAndServe listens on addr ("" does nothing) and serves in the
// background; it returns the listener's address once it is open.
func (s *Server) ListenAndServe(kind ListenerKind, addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtpd: %s: %w", kind, err)
	}
	go s.Serve(kind, l)
	return l.Addr(), nil
}

// StopListener closes the listener with the given address (used when a
// port changes); established sessions go on.
func (s *Server) StopListener(addr net.Addr) { s.tcp.CloseListener(addr) }

// ServeConn serves one connection accepted elsewhere (tests use net.Pipe).
func (s *Server) ServeConn(kind ListenerKind, c net.Conn) { s.tcp.ServeConn(c, s.ports[kind]) }

// refuse answers a connection over the limits (RFC 5321 3.1: 421 instead
// of the greeting).
func (s *Server) refuse(c net.Conn, _ error) {
	s.Rejected.Add(1)
	c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
}

// handler serves the connections of a port: it puts the front end
// around the connection, hands it to the port's go-smtp server and waits
// until that closes it, so that the skeleton counts the connection as
// long as it lives.
func (s *Server) handler(kind ListenerKind) tcpserve.Handler {
	return func(ctx context.Context, c *tcpserve.Conn) {
		set := s.settings.Load()
		raw := c.Conn
		fc := &frontConn{raw: raw, under: raw, srv: s, kind: kind, tlsCfg: set.TLSConfig, idle: set.IdleTimeout, startIdle: set.StartTimeout}
		if set.Dir != nil && set.Postmaster != "" {
			fc.postmstr = set.Postmaster
		}
		if kind == SubmissionTLS {
			if set.TLSConfig == nil {
				return
			}
			fc.under = tls.Server(raw, set.TLSConfig)
			fc.tls.Store(true)
		}
		s.Accepted.Add(1)
		if set.Spool != nil {
			set.Spool.Activity(fc.remoteIP(), 0, 0)
		}
		raw.SetDeadline(time.Now().Add(set.IdleTimeout))
		closed := make(chan struct{})
		fc.onClose = func() { close(closed) }
		start := time.Now()
		defer func() {
			c.Log.Info("connection closed", "tls", fc.isTLS(), "duration", time.Since(start).Round(time.Millisecond))
		}()
		stop := context.AfterFunc(ctx, fc.startShutdown)
		defer stop()
		s.mu.Lock()
		lib := s.lib[kind]
		s.mu.Unlock()
		if !lib.ch.push(&guardConn{frontConn: fc, log: c.Log, panics: &s.tcp.Panics}) {
			fc.Close()
			return
		}
		<-closed
	}
}

// Shutdown stops accepting, answers the next command of every session
// with 421, lets messages being received finish until ctx is done, and
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.tcp.Shutdown(ctx)
	s.closeLibs()
	return err
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.tcp.Close()
	s.closeLibs()
	return nil
}

func (s *Server) closeLibs() {
	s.mu.Lock()
	libs := s.lib
	s.mu.Unlock()
	for _, ls := range libs {
		ls.ch.Close()
		ls.srv.Close()
	}
}

// guardConn is the connection go-smtp reads commands from. The library
// recovers panics in its command handlers but not in reading a command,
// where the front end runs: a panic there is logged with its stack and
// ends this connection only.
type guardConn struct {
	*frontConn
	log    *slog.Logger
	panics *atomic.Uint64
}

func (g *guardConn) Read(p []byte) (n int, err error) {
	defer g.recoverPanic(&err)
	return g.frontConn.Read(p)
}

func (g *guardConn) Write(p []byte) (n int, err error) {
	defer g.recoverPanic(&err)
	return g.frontConn.Write(p)
}

func (g *guardConn) recoverPanic(err *error) {
	r := recover()
	if r == nil {
		return
	}
	g.panics.Add(1)
	g.log.Error("panic: connection closed", "panic", r, "stack", string(debug.Stack()))
	g.raw.Close()
	*err = net.ErrClosed
}

// frontOf is the front end of a connection that go-smtp got from us.
func frontOf(c net.Conn) *frontConn {
	if g, ok := c.(*guardConn); ok {
		return g.frontConn
	}
	return nil
}

// chanListener hands connections accepted elsewhere to a go-smtp server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// slogLogger takes go-smtp's log lines. A panic the library recovered
// in a command handler ("panic serving <addr>: <value>\n<stack>") is an
// error with its stack; the rest is debug.
type slogLogger struct {
	l      *slog.Logger
	panics *atomic.Uint64
}

func (s slogLogger) Printf(format string, v ...any) {
	if strings.HasPrefix(format, "panic serving ") && len(v) == 3 {
		s.panics.Add(1)
		s.l.Error("panic: connection closed", "remote", fmt.Sprint(v[0]), "panic", v[1], "stack", fmt.Sprintf("%s", v[2]))
		return
	}
	s.l.Debug(fmt.Sprintf(format, v...))
}
func (s slogLogger) Println(v ...any) { s.l.Debug(fmt.Sprint(v...)) }

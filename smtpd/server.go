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
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"concierge/internal/authlimit"
	"concierge/internal/connlimit"
	"concierge/internal/mailaddr"
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
	// Verify checks a user's password.
	Verify(user, password string) bool
	// Maildir is the Maildir directory of a local user.
	Maildir(user string) string
}

// Settings are the parts of the server that may change while it runs.
type Settings struct {
	Hostname        string // FQDN for the banner and Received: headers
	Dir             Directory
	RelayNetworks   []netip.Prefix // may relay without AUTH
	MaxMessageBytes int64
	MaxRecipients   int
	IdleTimeout     time.Duration
	MaxConns        int
	MaxConnsPerIP   int
	TLSConfig       *tls.Config // nil: no STARTTLS, no AUTH, no port 465
	DropDir         string
	// Postmaster is the address a bare "RCPT TO:<postmaster>" means.
	Postmaster string
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

	mu        sync.Mutex
	lib       map[ListenerKind]*libServer
	listeners map[net.Listener]ListenerKind
	conns     map[*frontConn]struct{}
	counts    connlimit.Counter
	closing   bool
	wg        sync.WaitGroup

	// AuthFails slows down password guessing per address and user.
	AuthFails *authlimit.Limiter

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
		Store: st, Log: log, AuthFails: &authlimit.Limiter{},
		lib:       map[ListenerKind]*libServer{},
		listeners: map[net.Listener]ListenerKind{},
		conns:     map[*frontConn]struct{}{},
	}
	s.Configure(set)
	return s
}

func (s *Server) log() *slog.Logger { return s.Log }

// Configure applies new settings. Sessions in progress keep the library
// server they started on; new connections get one built from set.
func (s *Server) Configure(set *Settings) {
	s.settings.Store(set)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	for _, k := range []ListenerKind{MX, Submission, SubmissionTLS} {
		old := s.lib[k]
		ls := &libServer{srv: s.newLib(k, set), ch: newChanListener()}
		s.lib[k] = ls
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ls.srv.Serve(ls.ch)
		}()
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
	ls.ErrorLog = slogLogger{s.Log}
	return ls
}

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(kind ListenerKind, l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return smtp.ErrServerClosed
	}
	s.listeners[l] = kind
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		raw, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			s.Log.Warn("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.accept(kind, raw)
	}
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
func (s *Server) StopListener(addr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		if l.Addr().String() == addr.String() {
			l.Close()
		}
	}
}

// ServeConn serves one connection accepted elsewhere (tests use net.Pipe).
func (s *Server) ServeConn(kind ListenerKind, c net.Conn) { s.accept(kind, c) }

func (s *Server) accept(kind ListenerKind, raw net.Conn) {
	set := s.settings.Load()
	ip := connlimit.RemoteIP(raw)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		raw.Close()
		return
	}
	if !s.counts.Acquire(ip, set.MaxConns, set.MaxConnsPerIP) {
		s.mu.Unlock()
		s.Rejected.Add(1)
		s.Log.Info("connection refused: too many", "remote", raw.RemoteAddr().String(), "port", kind.String())
		go func() {
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			raw.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
			raw.Close()
		}()
		return
	}
	s.Accepted.Add(1)
	fc := &frontConn{raw: raw, under: raw, srv: s, kind: kind, tlsCfg: set.TLSConfig, idle: set.IdleTimeout}
	if set.Dir != nil && set.Postmaster != "" {
		fc.postmstr = set.Postmaster
	}
	if kind == SubmissionTLS {
		if set.TLSConfig == nil {
			s.mu.Unlock()
			s.counts.Release(ip)
			raw.Close()
			return
		}
		fc.under = tls.Server(raw, set.TLSConfig)
		fc.tls.Store(true)
	}
	raw.SetDeadline(time.Now().Add(set.IdleTimeout))
	s.conns[fc] = struct{}{}
	lib := s.lib[kind]
	start := time.Now()
	fc.onClose = func() {
		s.mu.Lock()
		delete(s.conns, fc)
		s.mu.Unlock()
		s.counts.Release(ip)
		s.Log.Info("connection closed", "remote", raw.RemoteAddr().String(), "port", kind.String(), "tls", fc.isTLS(), "duration", time.Since(start).Round(time.Millisecond))
	}
	s.mu.Unlock()
	if !lib.ch.push(fc) {
		fc.Close()
	}
}

// Shutdown stops accepting, answers the next command of every session
// with 421, lets messages being received finish until ctx is done, and
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for fc := range s.conns {
		fc.startShutdown()
	}
	libs := s.lib
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ls := range libs {
		ls.ch.Close()
		wg.Add(1)
		go func() { defer wg.Done(); ls.srv.Shutdown(ctx) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for fc := range s.conns {
		fc.under.Close()
	}
	libs := s.lib
	s.mu.Unlock()
	for _, ls := range libs {
		ls.ch.Close()
		ls.srv.Close()
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

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s slogLogger) Println(v ...any)               { s.l.Debug(fmt.Sprint(v...)) }

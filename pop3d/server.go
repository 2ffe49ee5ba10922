package pop3d

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"concierge/internal/connlimit"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pop3d: server closed")

// Server is a POP3 server. Auth, Mailboxes and Log are set before Serve
// and not changed after; the settings that may change while it runs are
// swapped in with Configure.
type Server struct {
	Auth      Authenticator
	Mailboxes Mailboxes
	Log       *slog.Logger

	settings atomic.Pointer[Settings]

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	conns     connlimit.Counter
	closing   bool
	wg        sync.WaitGroup
	nextID    atomic.Uint64

	stats stats
}

// NewServer returns a server over auth and boxes with settings set.
func NewServer(auth Authenticator, boxes Mailboxes, set *Settings, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if set == nil {
		set = &Settings{}
	}
	s := &Server{
		Auth: auth, Mailboxes: boxes, Log: log,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
	}
	s.stats.init()
	s.Configure(set)
	return s
}

// Configure applies new settings. A session keeps the settings it started
// with, except that a shorter idle timeout applies at its next command.
func (s *Server) Configure(set *Settings) { s.settings.Store(set.withDefaults()) }

// Serve accepts connections on l until Shutdown or Close. A listener made
// by tls.NewListener serves implicit TLS (port 995, RFC 8314).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
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
		s.ServeConn(c)
	}
}

// ServeConn serves one connection accepted elsewhere, in the background
// (tests use net.Pipe). A *tls.Conn is served as implicit TLS.
func (s *Server) ServeConn(c net.Conn) {
	set := s.settings.Load()
	ip := connlimit.RemoteIP(c)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	if !s.conns.Acquire(ip, set.MaxConns, set.MaxConnsPerIP) {
		s.mu.Unlock()
		s.stats.refused.Add(1)
		s.Log.Info("connection refused: too many", "remote", c.RemoteAddr().String())
		go func() {
			// RFC 2449 8: [SYS/TEMP] tells the client to try later.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("-ERR " + codeSysTemp + "Too many connections, try again later\r\n"))
			c.Close()
		}()
		return
	}
	sess := newSession(s, c, set, ip)
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.accepted.Add(1)
	go func() {
		defer s.wg.Done()
		sess.serve()
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
		s.conns.Release(ip)
	}()
}

// Shutdown stops accepting, lets commands in progress finish, ends every
// session at its next command with "-ERR [SYS/TEMP]" and without entering
// UPDATE (so nothing is deleted), and waits for the sessions until ctx is
// done; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for sess := range s.sessions {
		sess.startShutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes every listener and connection at once. Sessions end
// without entering UPDATE.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for sess := range s.sessions {
		sess.closing.Store(true)
		sess.conn.Close()
	}
	s.mu.Unlock()
	return nil
}

// Sessions is the number of open sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// stats counts commands and outcomes for the status page.
type stats struct {
	accepted, refused      atomic.Uint64
	logins, loginFailures  atomic.Uint64
	retrieved, deleted     atomic.Uint64
	inUse, updateFailures  atomic.Uint64
	commands               map[string]*atomic.Uint64 // read-only after init
	unknown, errorsAnswers atomic.Uint64
}

func (st *stats) init() {
	st.commands = map[string]*atomic.Uint64{}
	for verb := range commands {
		st.commands[verb] = new(atomic.Uint64)
	}
}

// Counters returns the server's counters by name: "connections",
// "refused", "logins", "login_failures", "in_use", "retrieved", "deleted",
// "update_failures", "unknown_commands", "err_replies" and "cmd_<VERB>".
func (s *Server) Counters() map[string]uint64 {
	st := &s.stats
	m := map[string]uint64{
		"connections":      st.accepted.Load(),
		"refused":          st.refused.Load(),
		"logins":           st.logins.Load(),
		"login_failures":   st.loginFailures.Load(),
		"in_use":           st.inUse.Load(),
		"retrieved":        st.retrieved.Load(),
		"deleted":          st.deleted.Load(),
		"update_failures":  st.updateFailures.Load(),
		"unknown_commands": st.unknown.Load(),
		"err_replies":      st.errorsAnswers.Load(),
	}
	verbs := make([]string, 0, len(st.commands))
	for v := range st.commands {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	for _, v := range verbs {
		m["cmd_"+v] = st.commands[v].Load()
	}
	return m
}

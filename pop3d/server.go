package pop3d

import (
	"context"
	"log/slog"
	"net"
	"sort"
	"sync/atomic"

	"concierge/internal/connlimit"
	"concierge/internal/tcpserve"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = tcpserve.ErrServerClosed

// Server is a POP3 server. Auth, Mailboxes and Log are set before Serve
// and not changed after; the settings that may change while it runs are
// swapped in with Configure.
type Server struct {
	Auth      Authenticator
	Mailboxes Mailboxes
	Log       *slog.Logger

	settings atomic.Pointer[Settings]

	tcp  tcpserve.Server
	pool connlimit.Pool // ports 110 and 995 together
	port tcpserve.Port

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
	s := &Server{Auth: auth, Mailboxes: boxes, Log: log}
	s.tcp.Log = log
	s.port = tcpserve.Port{Name: "pop3", Pool: &s.pool, Handle: s.handle, Refuse: s.refuse}
	s.stats.init()
	s.Configure(set)
	return s
}

// Configure applies new settings. A session keeps the settings it started
// with, except that a shorter idle timeout applies at its next command.
func (s *Server) Configure(set *Settings) {
	set = set.withDefaults()
	s.settings.Store(set)
	s.pool.SetLimits(connlimit.Limits{Total: set.MaxConns, PerAddr: set.MaxConnsPerIP, PerNet: set.MaxConnsPerNet})
}

// Serve accepts connections on l until Shutdown or Close. A listener made
// by tls.NewListener serves implicit TLS (port 995, RFC 8314).
func (s *Server) Serve(l net.Listener) error { return s.tcp.Serve(l, &s.port) }

// ServeConn serves one connection accepted elsewhere, in the background
// (tests use net.Pipe). A *tls.Conn is served as implicit TLS.
func (s *Server) ServeConn(c net.Conn) { s.tcp.ServeConn(c, &s.port) }

func (s *Server) handle(ctx context.Context, c *tcpserve.Conn) {
	s.stats.accepted.Add(1)
	sess := newSession(s, c, s.settings.Load())
	stop := context.AfterFunc(ctx, sess.startShutdown)
	defer stop()
	sess.serve()
}

// refuse answers a connection over the limits.
func (s *Server) refuse(c net.Conn, _ error) {
	s.stats.refused.Add(1)
	// RFC 2449 8: [SYS/TEMP] tells the client to try later.
	c.Write([]byte("-ERR " + codeSysTemp + "Too many connections, try again later\r\n"))
}

// Shutdown stops accepting, lets commands in progress finish, ends every
// session at its next command with "-ERR [SYS/TEMP]" and without entering
// UPDATE (so nothing is deleted), and waits for the sessions until ctx is
// done; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error { return s.tcp.Shutdown(ctx) }

// Close closes every listener and connection at once. Sessions end
// without entering UPDATE.
func (s *Server) Close() error { return s.tcp.Close() }

// Sessions is the number of open sessions.
func (s *Server) Sessions() int { return s.tcp.Conns() }

// stats counts commands and outcomes for the status page.
type stats struct {
	accepted, refused      atomic.Uint64 // sessions served, connections refused
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
// "update_failures", "unknown_commands", "err_replies", "panics" and
// "cmd_<VERB>".
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
		"panics":           s.tcp.Panics.Load(),
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

// Package session is the NetBIOS session service on 139/tcp (RFC 1001 16,
// RFC 1002 4.3 and 5.2): it answers SESSION REQUESTs for the names the box
// holds, retargets names the admin maps to another host (RETARGET SESSION
// RESPONSE), and serves gateway names: a session called to such a name is
// proxied to a plain TCP service (see Gateway for the framing).
//
// Every connection is bounded: the request must arrive within
// RequestTimeout, a session with no traffic for Idle is closed, a KEEP ALIVE
// goes out after KeepAlive without traffic, and a SESSION MESSAGE longer
// than MaxMessage ends the session. The accept loop, connection limits and
// panic recovery are internal/tcpserve's.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"concierge/internal/connlimit"
	"concierge/internal/tcpserve"
	"concierge/nbt/wire"
)

// Defaults of Config.
const (
	DefaultPort           = 139
	DefaultMaxConns       = 64                 // concurrent sessions
	DefaultMaxConnsPerIP  = 16                 // concurrent sessions from one address
	DefaultMaxMessage     = wire.MaxSessionLen // longest SESSION MESSAGE accepted
	DefaultRequestTimeout = 30 * time.Second   // for the SESSION REQUEST after connecting
	DefaultIdle           = 10 * time.Minute   // a session without traffic is closed
	DefaultKeepAlive      = time.Minute        // a KEEP ALIVE goes out after this long without traffic
	DefaultDialTimeout    = 10 * time.Second   // to a gateway's TCP service
	writeTimeout          = 30 * time.Second   // one write to either side
	deadlineRefresh       = time.Second        // write deadlines are moved on at most this often
	relayBuffer           = 64 << 10           // bytes a gateway session reads at once, per direction
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = tcpserve.ErrServerClosed

// Gateway maps a NetBIOS name to a TCP service. A session called to Name
// opens a TCP connection to Addr; the payload of every SESSION MESSAGE
// from the caller is written to it unchanged, and whatever the service
// sends is returned in SESSION MESSAGEs of at most MaxMessage bytes (the
// bytes are the same in both directions; where one message ends is not
// kept). KEEP ALIVEs are not forwarded. When either side closes, so does
// the other.
type Gateway struct {
	Name wire.Name
	Addr string // host:port
}

// Retarget sends callers of Name to another address and port
// (RFC 1002 4.3.5).
type Retarget struct {
	Name wire.Name
	To   netip.AddrPort
}

// Config are the server's settings; zero values mean the defaults.
type Config struct {
	// Holds reports whether the box holds a name (the name service's
	// own names). A called name that is held but neither a gateway nor
	// served gets NEGATIVE RESPONSE 0x80, one not held 0x82.
	Holds func(wire.Name) bool
	// Server is the box's NAME<20>: a session to it (or to *SMBSERVER)
	// is accepted, and ended with a log line at the first SMB packet,
	// since the box offers no file service; clients then report a clean
	// failure instead of a refused name.
	Server    wire.Name
	Gateways  []Gateway
	Retargets []Retarget

	MaxConns, MaxConnsPerIP int
	MaxMessage              int
	RequestTimeout          time.Duration
	Idle                    time.Duration
	KeepAlive               time.Duration
	DialTimeout             time.Duration

	Log *slog.Logger
	// Dial opens gateway connections; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Config) withDefaults() *Config {
	n := *c
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if n.MaxConns <= 0 {
		n.MaxConns = DefaultMaxConns
	}
	if n.MaxConnsPerIP <= 0 {
		n.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if n.MaxMessage <= 0 || n.MaxMessage > wire.MaxSessionLen {
		n.MaxMessage = DefaultMaxMessage
	}
	def(&n.RequestTimeout, DefaultRequestTimeout)
	def(&n.Idle, DefaultIdle)
	def(&n.KeepAlive, DefaultKeepAlive)
	def(&n.DialTimeout, DefaultDialTimeout)
	if n.Dial == nil {
		d := &net.Dialer{}
		n.Dial = d.DialContext
	}
	if n.Holds == nil {
		n.Holds = func(wire.Name) bool { return false }
	}
	return &n
}

// Server is the session service.
type Server struct {
	log  *slog.Logger
	cfg  atomic.Pointer[Config]
	tcp  tcpserve.Server
	pool connlimit.Pool
	port tcpserve.Port

	mu       sync.Mutex
	sessions map[*conn]struct{}

	counters counters
}

// New returns a server with the given settings.
func New(cfg Config) *Server {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, sessions: map[*conn]struct{}{}}
	s.tcp.Log = log
	s.port = tcpserve.Port{Name: "nbss", Pool: &s.pool, Handle: s.handle, Refuse: s.refuse}
	s.Configure(cfg)
	return s
}

// Configure applies new settings; sessions in progress keep theirs.
func (s *Server) Configure(cfg Config) {
	c := cfg.withDefaults()
	s.cfg.Store(c)
	s.pool.SetLimits(connlimit.Limits{Total: c.MaxConns, PerAddr: c.MaxConnsPerIP})
}

// Serve accepts sessions on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error { return s.tcp.Serve(l, &s.port) }

// ServeConn serves one connection accepted elsewhere, in the background.
func (s *Server) ServeConn(c net.Conn) { s.tcp.ServeConn(c, &s.port) }

// Shutdown stops accepting and ends every session, waiting until ctx is
// done for them to go.
func (s *Server) Shutdown(ctx context.Context) error { return s.tcp.Shutdown(ctx) }

// Close closes the listeners and every session at once.
func (s *Server) Close() error { return s.tcp.Close() }

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() []net.Addr { return s.tcp.Addrs() }

// refuse answers a connection over the limits (RFC 1002 4.3.4: called
// name present, but insufficient resources).
func (s *Server) refuse(c net.Conn, _ error) {
	s.counters.refused.Add(1)
	c.Write(wire.AppendNegative(nil, wire.SessErrInsufficient))
}

// SessionInfo describes an open session for the status.
type SessionInfo struct {
	ID       string    `json:"id"`
	Remote   string    `json:"remote"`
	Called   string    `json:"called"`
	Calling  string    `json:"calling"`
	Target   string    `json:"target,omitempty"` // the gateway's TCP service
	Since    time.Time `json:"since"`
	BytesIn  uint64    `json:"bytes_in"` // from the caller
	BytesOut uint64    `json:"bytes_out"`
}

// Sessions lists the established sessions, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for c := range s.sessions {
		out = append(out, c.info())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Conns is the number of open connections, established or not.
func (s *Server) Conns() int { return s.tcp.Conns() }

type counters struct {
	accepted, refused, positive, retarget, malformed, idle, tooLong, smb, dialFailed atomic.Uint64
	negative                                                                         [4]atomic.Uint64 // 0x80..0x83
	bytesIn, bytesOut, keepAlivesSent                                                atomic.Uint64
}

// Counters returns the server's counters by name, for the status page.
func (s *Server) Counters() map[string]uint64 {
	c := &s.counters
	return map[string]uint64{
		"connections":            c.accepted.Load(),
		"refused":                c.refused.Load(),
		"positive":               c.positive.Load(),
		"negative_not_listening": c.negative[0].Load(),
		"negative_not_present":   c.negative[2].Load(),
		"negative_resources":     c.negative[3].Load(),
		"retarget":               c.retarget.Load(),
		"malformed":              c.malformed.Load(),
		"idle_closed":            c.idle.Load(),
		"too_long":               c.tooLong.Load(),
		"smb_refused":            c.smb.Load(),
		"dial_failed":            c.dialFailed.Load(),
		"bytes_in":               c.bytesIn.Load(),
		"bytes_out":              c.bytesOut.Load(),
		"keepalives_sent":        c.keepAlivesSent.Load(),
		"panics":                 s.tcp.Panics.Load(),
	}
}

func (s *Server) handle(ctx context.Context, tc *tcpserve.Conn) {
	s.counters.accepted.Add(1)
	c := &conn{srv: s, cfg: s.cfg.Load(), tc: tc, log: tc.Log, wdl: writeDeadline{conn: tc.Conn}}
	stop := context.AfterFunc(ctx, func() { tc.Conn.Close() })
	defer stop()
	c.serve()
}

var errMalformed = errors.New("session: malformed packet")

// smbNames are called names a client uses for a file server besides the
// box's NAME<20>.
var smbServer = wire.MustName("*SMBSERVER", 0x20, "")

func (s *Server) find(cfg *Config, n wire.Name) (gw *Gateway, rt *Retarget) {
	for i := range cfg.Gateways {
		if cfg.Gateways[i].Name.Equal(n) {
			return &cfg.Gateways[i], nil
		}
	}
	for i := range cfg.Retargets {
		if cfg.Retargets[i].Name.Equal(n) {
			return nil, &cfg.Retargets[i]
		}
	}
	return nil, nil
}

// Describe is for log lines.
func (g Gateway) String() string { return fmt.Sprintf("%s=%s", g.Name, g.Addr) }

// Package pop3d is the box's POP3 server: RFC 1939 (the AUTHORIZATION,
// TRANSACTION and UPDATE states and every command but APOP), RFC 2449
// (CAPA, response codes, PIPELINING), RFC 3206 ([SYS/TEMP], [SYS/PERM],
// [AUTH]), RFC 2595 (STLS on port 110; port 995 is Serve on a TLS
// listener) and RFC 5034 (AUTH with SASL PLAIN, RFC 4616).
//
// APOP is not offered: it needs the password kept in clear and rests on
// MD5 (CVE-2007-1558); the greeting carries no timestamp and APOP gets a
// clear -ERR.
//
// The server knows nothing of the appliance: it checks passwords through
// an Authenticator and reaches mail through Mailboxes, both plugged in by
// the caller.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"time"

	"concierge/internal/connlimit"
)

// Authenticator checks logins. Authenticate checks a login (a user name
// or an address of the user) and its password from the client at ip and
// returns the user whose maildrop the session opens. Its error matches
// authlimit.ErrTryLater when the login is refused for now (answered
// [SYS/TEMP]); any other error means bad credentials ([AUTH]). It should
// spend the same time on an unknown user as on a wrong password.
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string, ip netip.Addr) (user string, err error)
}

// Mailboxes opens users' maildrops.
type Mailboxes interface {
	// Lock locks the maildrop of user for one session (RFC 1939
	// section 4: "exclusive-access lock") and lists its messages. It
	// returns an error matching ErrInUse when another session holds it.
	Lock(user string) (Maildrop, error)
}

// Maildrop is a locked maildrop: a fixed list of messages numbered from 0
// here (from 1 on the wire).
type Maildrop interface {
	Len() int
	// Info returns the unique ID (RFC 1939 section 7: 1 to 70
	// characters 0x21-0x7E) and the exact size in octets of message i
	// as Open returns it.
	Info(i int) (uid string, size int64)
	// Open returns message i with CRLF line endings, ending in CRLF.
	Open(i int) (io.ReadCloser, error)
	// Update applies the end of a session: deletes the messages in
	// deleted, all or none as far as the store allows, and records the
	// ones in seen as read. An error means some were not deleted.
	Update(deleted, seen []int) error
	// Close releases the lock.
	Close() error
}

// ErrInUse is what Mailboxes.Lock returns (or wraps) for a maildrop that
// another session holds.
var ErrInUse = errors.New("pop3d: maildrop in use")

// Settings are the parts of the server that may change while it runs; see
// Server.Configure. Zero values take the defaults named below.
type Settings struct {
	// Hostname is named in the greeting.
	Hostname string
	// TLSConfig enables STLS; nil: no STLS (port 995 needs a TLS
	// listener, which the caller makes).
	TLSConfig *tls.Config
	// TrustedNetworks may log in without TLS. Default: none.
	TrustedNetworks []netip.Prefix
	// IdleTimeout closes a logged-in session that sends nothing (RFC
	// 1939 section 3: the autologout timer is at least 10 minutes).
	// Default 10m.
	IdleTimeout time.Duration
	// LoginTimeout is the idle timeout before a successful login, so
	// that connections that never log in do not hold slots for long.
	// Default DefaultLoginTimeout.
	LoginTimeout time.Duration
	// MaxConns, MaxConnsPerIP and MaxConnsPerNet cap concurrent
	// sessions overall, per client address and per client network (a
	// /24 or /64, see connlimit.Network). Defaults from connlimit.
	MaxConns, MaxConnsPerIP, MaxConnsPerNet int
}

// Limits that are not settings.
const (
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultLoginTimeout   = 30 * time.Second
	DefaultMaxConns       = connlimit.DefaultTotal
	DefaultMaxConnsPerIP  = connlimit.DefaultPerAddr
	DefaultMaxConnsPerNet = connlimit.DefaultPerNet
	// MaxLine is the longest command line, CRLF included. RFC 2449
	// section 4 allows 255 octets; AUTH lines (RFC 5034 section 4) and
	// long passwords get more room.
	MaxLine = 1024
	// MaxErrors ends a session after that many bad commands.
	MaxErrors = 10
	// MaxAuthFailures ends a session after that many failed logins.
	MaxAuthFailures = 3
	// WriteTimeout bounds each write to the client.
	WriteTimeout = 2 * time.Minute
	// HandshakeTimeout bounds a TLS handshake.
	HandshakeTimeout = 30 * time.Second
)

// Response codes (RFC 2449 section 8, RFC 3206).
const (
	codeInUse   = "[IN-USE] "   // RFC 2449 8.1.2: the maildrop is locked
	codeAuth    = "[AUTH] "     // RFC 3206 5: bad credentials
	codeSysTemp = "[SYS/TEMP] " // RFC 3206 4: a transient system problem
	codeSysPerm = "[SYS/PERM] " // RFC 3206 4: a permanent system problem
)

func (s *Settings) withDefaults() *Settings {
	c := *s
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = DefaultLoginTimeout
	}
	if c.MaxConnsPerNet <= 0 {
		c.MaxConnsPerNet = DefaultMaxConnsPerNet
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	return &c
}

func (s *Settings) trusted(a netip.Addr) bool {
	for _, p := range s.TrustedNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

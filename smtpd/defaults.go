package smtpd

import (
	"cmp"
	"time"

	"concierge/internal/connlimit"
)

// Defaults of Settings: a zero value in Settings takes these, and the
// appliance's settings file starts from them.
const (
	// DefaultMaxMessageBytes is the SIZE limit (RFC 1870).
	DefaultMaxMessageBytes = 25 << 20
	// DefaultMaxRecipients is the most recipients of one message (RFC
	// 5321 4.5.3.1.8 asks to accept at least 100).
	DefaultMaxRecipients = 100
	// DefaultIdleTimeout closes a silent connection (RFC 5321 4.5.3.2
	// suggests at least 5 minutes).
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxConns and DefaultMaxConnsPerIP cap concurrent
	// connections overall and per client address.
	// DefaultMaxConnsPerNet caps them per /24 or /64. The pools'
	// defaults are connlimit's.
	DefaultMaxConns       = connlimit.DefaultTotal
	DefaultMaxConnsPerIP  = connlimit.DefaultPerAddr
	DefaultMaxConnsPerNet = connlimit.DefaultPerNet
)

// withDefaults returns a copy of s with zero values replaced by the
// defaults.
func (s *Settings) withDefaults() *Settings {
	c := *s
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, DefaultMaxMessageBytes)
	c.MaxRecipients = cmp.Or(c.MaxRecipients, DefaultMaxRecipients)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.MaxConnsPerIP = cmp.Or(c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	c.MaxConnsPerNet = cmp.Or(c.MaxConnsPerNet, DefaultMaxConnsPerNet)
	return &c
}

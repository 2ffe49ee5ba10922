package smtpd

import "time"

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
	DefaultMaxConns      = 200
	DefaultMaxConnsPerIP = 20
)

// withDefaults returns a copy of s with zero values replaced by the
// defaults.
func (s *Settings) withDefaults() *Settings {
	c := *s
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = DefaultMaxRecipients
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	return &c
}

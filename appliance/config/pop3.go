package config

import (
	"time"

	"concierge/pop3d"
)

// POP3 holds the POP3 server's settings.
type POP3 struct {
	Listen    string `json:"listen"`     // port 110, STLS
	ListenTLS string `json:"tls_listen"` // port 995, implicit TLS
	// TrustedNetworks may log in without TLS (CIDRs). Default: none.
	TrustedNetworks []string `json:"trusted_networks"`
	// IdleTimeout is the autologout timer (RFC 1939 3: at least 10
	// minutes).
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxConnections overall, per client address and per client
	// network (a /24 or /64).
	MaxConnections       int `json:"max_connections"`
	MaxConnectionsPerIP  int `json:"max_connections_per_ip"`
	MaxConnectionsPerNet int `json:"max_connections_per_net"`
}

// DefaultPOP3 returns the POP3 defaults: the server's own, on the
// standard ports.
func DefaultPOP3() POP3 {
	return POP3{
		Listen:               ":110",
		ListenTLS:            ":995",
		IdleTimeout:          Duration(pop3d.DefaultIdleTimeout),
		MaxConnections:       pop3d.DefaultMaxConns,
		MaxConnectionsPerIP:  pop3d.DefaultMaxConnsPerIP,
		MaxConnectionsPerNet: pop3d.DefaultMaxConnsPerNet,
	}
}

func (s *POP3) validate(p string) Errors {
	var errs Errors
	for _, l := range []struct{ f, v string }{{"listen", s.Listen}, {"tls_listen", s.ListenTLS}} {
		if err := checkListen(l.v); err != nil {
			errs = append(errs, fieldErr(p+"."+l.f, "%v", err))
		}
	}
	errs = append(errs, checkTrustedNetworks(p+".trusted_networks", s.TrustedNetworks)...)
	if s.IdleTimeout.D() < 10*time.Minute || s.IdleTimeout.D() > 24*time.Hour {
		errs = append(errs, fieldErr(p+".idle_timeout", "must be between 10m (RFC 1939) and 24h, not %s", s.IdleTimeout))
	}
	if s.MaxConnections < 1 {
		errs = append(errs, fieldErr(p+".max_connections", "must be at least 1"))
	}
	if s.MaxConnectionsPerIP < 1 {
		errs = append(errs, fieldErr(p+".max_connections_per_ip", "must be at least 1"))
	}
	if s.MaxConnectionsPerNet < 1 {
		errs = append(errs, fieldErr(p+".max_connections_per_net", "must be at least 1"))
	}
	return errs
}

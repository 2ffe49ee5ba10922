package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"concierge/smtpd"
)

// SMTP holds the mail server's settings.
type SMTP struct {
	// Listen addresses; an empty one turns that port off.
	MX            string `json:"mx_listen"`             // port 25, mail from the Internet
	Submission    string `json:"submission_listen"`     // port 587, STARTTLS + AUTH
	SubmissionTLS string `json:"submission_tls_listen"` // port 465, implicit TLS
	// MaxMessageSize is the SIZE limit in bytes.
	MaxMessageSize int64 `json:"max_message_size"`
	// MaxRecipients per message.
	MaxRecipients int `json:"max_recipients"`
	// IdleTimeout closes a connection that sends nothing for this long
	// (RFC 5321 4.5.3.2 suggests at least 5 minutes).
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxConnections overall, per client address and per client
	// network (a /24 or /64), in each pool: port 25, and submission
	// (587 and 465).
	MaxConnections       int `json:"max_connections"`
	MaxConnectionsPerIP  int `json:"max_connections_per_ip"`
	MaxConnectionsPerNet int `json:"max_connections_per_net"`
	// TLSCert and TLSKey are PEM files; empty means a self-signed
	// certificate for the hostname, made on first start.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	// DropDir, when set, receives a copy of each accepted message as
	// <unique>.eml.
	DropDir string `json:"drop_dir,omitempty"`
	// LocalSenderCheck refuses mail on port 25 whose envelope sender is
	// one of the office's own addresses when the client is neither
	// logged in nor in a relay network (such mail is forged: the office's
	// own mail programs submit on 587/465 or relay from the LAN).
	LocalSenderCheck bool `json:"local_sender_check"`
}

// DefaultSMTP returns the SMTP defaults: the server's own, on the
// standard ports.
func DefaultSMTP() SMTP {
	return SMTP{
		MX:                   ":25",
		Submission:           ":587",
		SubmissionTLS:        ":465",
		MaxMessageSize:       smtpd.DefaultMaxMessageBytes,
		MaxRecipients:        smtpd.DefaultMaxRecipients,
		IdleTimeout:          Duration(smtpd.DefaultIdleTimeout),
		MaxConnections:       smtpd.DefaultMaxConns,
		MaxConnectionsPerIP:  smtpd.DefaultMaxConnsPerIP,
		MaxConnectionsPerNet: smtpd.DefaultMaxConnsPerNet,
		LocalSenderCheck:     true,
	}
}

func (s *SMTP) validate(p string) Errors {
	var errs Errors
	for _, l := range []struct{ f, v string }{{"mx_listen", s.MX}, {"submission_listen", s.Submission}, {"submission_tls_listen", s.SubmissionTLS}} {
		if err := checkListen(l.v); err != nil {
			errs = append(errs, fieldErr(p+"."+l.f, "%v", err))
		}
	}
	if s.MaxMessageSize < 1024 || s.MaxMessageSize > 1<<30 {
		errs = append(errs, fieldErr(p+".max_message_size", "must be between 1024 and 1073741824 bytes, not %d", s.MaxMessageSize))
	}
	if s.MaxRecipients < 1 || s.MaxRecipients > 10000 {
		errs = append(errs, fieldErr(p+".max_recipients", "must be between 1 and 10000, not %d", s.MaxRecipients))
	}
	if s.IdleTimeout.D() < time.Second || s.IdleTimeout.D() > time.Hour {
		errs = append(errs, fieldErr(p+".idle_timeout", "must be between 1s and 1h, not %s", s.IdleTimeout))
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
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, fieldErr(p+".tls_cert", "tls_cert and tls_key must be set together"))
	}
	for _, f := range []struct{ f, v string }{{"tls_cert", s.TLSCert}, {"tls_key", s.TLSKey}} {
		if f.v != "" {
			if _, err := os.Stat(f.v); err != nil {
				errs = append(errs, fieldErr(p+"."+f.f, "%v", err))
			}
		}
	}
	if s.DropDir != "" {
		if fi, err := os.Stat(s.DropDir); err != nil || !fi.IsDir() {
			errs = append(errs, fieldErr(p+".drop_dir", "%q is not an existing directory", s.DropDir))
		}
	}
	return errs
}

// checkListen accepts "" (off), ":port" or "host:port".
func checkListen(v string) error {
	if v == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. :25 or 10.0.0.2:25)", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port", v)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: the host must be an IP address", v)
	}
	return nil
}

// Duration is a time.Duration written as "5m" or "30s" in the file.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 30s, 5m or 2h", b)
	}
	*d = Duration(v)
	return nil
}

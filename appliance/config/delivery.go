package config

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"concierge/smtpd/queue"
)

// Delivery holds the settings of outbound delivery (the queue runner).
type Delivery struct {
	// DNSServers are the resolvers asked for MX and address records, as
	// IP or IP:port; empty means the network interfaces' DNS servers
	// (the network page), or else the ones in /etc/resolv.conf (see
	// Config.Resolvers).
	DNSServers []string `json:"dns_servers"`
	// Smarthost, when set (host:port), receives all outbound mail instead
	// of the recipients' MX hosts: the ISP's relay.
	Smarthost string `json:"smarthost"`
	// SmarthostUser and SmarthostPassword log in to the smarthost (AUTH
	// PLAIN or LOGIN, only over TLS). The password is stored as given in
	// the settings file, which only root can read.
	SmarthostUser     string `json:"smarthost_user"`
	SmarthostPassword string `json:"smarthost_password" secret:"true"`
	// SmarthostTLS is "starttls" (port 587 or 25) or "tls" (implicit TLS,
	// port 465). TLS to the smarthost is required and its certificate is
	// verified.
	SmarthostTLS string `json:"smarthost_tls"`
	// SmarthostCAFile is a PEM file of extra CA certificates trusted for
	// the smarthost (for an ISP relay with a private CA); empty means the
	// system's roots only.
	SmarthostCAFile string `json:"smarthost_ca_file"`
	// RetrySchedule is the wait after each failed attempt: the first
	// entry after the first attempt, and so on; the last entry repeats.
	RetrySchedule []Duration `json:"retry_schedule"`
	// WarnAfter is the age of a message at which the sender is told it is
	// delayed (once); GiveUpAfter the age at which delivery stops and the
	// sender gets a failure report.
	WarnAfter   Duration `json:"warn_after"`
	GiveUpAfter Duration `json:"give_up_after"`
	// MaxConnections bounds outbound SMTP connections overall and
	// MaxConnectionsPerDomain those to one recipient domain.
	MaxConnections          int `json:"max_connections"`
	MaxConnectionsPerDomain int `json:"max_connections_per_domain"`
	// PostmasterCopy sends the postmaster a copy of every bounce.
	PostmasterCopy bool `json:"postmaster_copy"`
}

// DefaultDelivery returns the outbound delivery defaults: the queue
// runner's own.
func DefaultDelivery() Delivery {
	d := Delivery{
		SmarthostTLS:            "starttls",
		WarnAfter:               Duration(queue.DefaultWarnAfter),
		GiveUpAfter:             Duration(queue.DefaultGiveUpAfter),
		MaxConnections:          queue.DefaultMaxConns,
		MaxConnectionsPerDomain: queue.DefaultMaxConnsPerDomain,
	}
	for _, r := range queue.DefaultSchedule {
		d.RetrySchedule = append(d.RetrySchedule, Duration(r))
	}
	return d
}

func (d *Delivery) validate(p string) Errors {
	var errs Errors
	for i, s := range d.DNSServers {
		if err := checkDNSServer(s); err != nil {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.dns_servers[%d]", p, i), "%v", err))
		}
	}
	if d.Smarthost != "" {
		host, port, err := net.SplitHostPort(d.Smarthost)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			errs = append(errs, fieldErr(p+".smarthost", "%q is not host:port (e.g. smtp.isp.example:587)", d.Smarthost))
		}
	}
	if d.SmarthostPassword != "" && d.SmarthostUser == "" {
		errs = append(errs, fieldErr(p+".smarthost_password", "set smarthost_user first: a password needs a user name"))
	}
	if d.SmarthostTLS != "starttls" && d.SmarthostTLS != "tls" {
		errs = append(errs, fieldErr(p+".smarthost_tls", "must be starttls or tls, not %q", d.SmarthostTLS))
	}
	if d.SmarthostCAFile != "" {
		if _, err := os.Stat(d.SmarthostCAFile); err != nil {
			errs = append(errs, fieldErr(p+".smarthost_ca_file", "%v", err))
		}
	}
	if len(d.RetrySchedule) == 0 {
		errs = append(errs, fieldErr(p+".retry_schedule", "needs at least one delay (e.g. 1m,5m,15m,30m,1h,2h)"))
	}
	for i, r := range d.RetrySchedule {
		if r.D() < time.Second || r.D() > 24*time.Hour {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.retry_schedule[%d]", p, i), "must be between 1s and 24h, not %s", r))
		}
	}
	if d.GiveUpAfter.D() < 10*time.Second || d.GiveUpAfter.D() > 30*24*time.Hour {
		errs = append(errs, fieldErr(p+".give_up_after", "must be between 10s and 720h, not %s", d.GiveUpAfter))
	}
	if d.WarnAfter.D() < 0 || d.WarnAfter.D() >= d.GiveUpAfter.D() {
		errs = append(errs, fieldErr(p+".warn_after", "must be 0 (no warning) or shorter than give_up_after (%s), not %s", d.GiveUpAfter, d.WarnAfter))
	}
	if d.MaxConnections < 1 || d.MaxConnections > 1000 {
		errs = append(errs, fieldErr(p+".max_connections", "must be between 1 and 1000, not %d", d.MaxConnections))
	}
	if d.MaxConnectionsPerDomain < 1 || d.MaxConnectionsPerDomain > d.MaxConnections {
		errs = append(errs, fieldErr(p+".max_connections_per_domain", "must be between 1 and max_connections (%d), not %d", d.MaxConnections, d.MaxConnectionsPerDomain))
	}
	return errs
}

// checkDNSServer accepts an IP address or IP:port.
func checkDNSServer(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || net.ParseIP(host) == nil {
		return fmt.Errorf("%q is not an IP address or IP:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: bad port", s)
	}
	return nil
}

// Resolvers are the DNS servers outbound delivery and the diagnostics
// ask: delivery.dns_servers when set, else the DNS servers the network
// page gives the interfaces (each once, in order), else none, which
// means the ones in /etc/resolv.conf.
func (c *Config) Resolvers() []string {
	if len(c.Delivery.DNSServers) > 0 {
		return c.Delivery.DNSServers
	}
	var out []string
	for _, i := range c.Network.Interfaces {
		for _, d := range i.DNS {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

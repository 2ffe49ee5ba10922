package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"concierge/appliance/link"
)

// Link holds the dial-out link's settings (appliance/link) and the
// relay domains the box spools for (backup MX, released by ETRN).
type Link struct {
	// Mode is always (never dials), schedule or on-demand.
	Mode string `json:"mode"`
	// UpCommand and DownCommand bring the link up and down ("pon isp",
	// "ip link set wan up"); empty: the link is only watched.
	UpCommand      string   `json:"up_command"`
	DownCommand    string   `json:"down_command"`
	CommandTimeout Duration `json:"command_timeout"`
	// MailHost is the ISP's mail host (host:port, usually port 25): the
	// link is up when it answers, and ETRN goes there.
	MailHost       string   `json:"mail_host"`
	ConfirmTimeout Duration `json:"confirm_timeout"`
	Retries        int      `json:"retries"`
	RetryWait      Duration `json:"retry_wait"`
	// RedialWait is the pause after a failed round of tries while mail
	// waits (on-demand); it doubles after each failed round in a row, up
	// to MaxRedialWait.
	RedialWait    Duration `json:"redial_wait"`
	MaxRedialWait Duration `json:"max_redial_wait"`
	// IdleTime without traffic takes the link down (on-demand, schedule).
	IdleTime Duration `json:"idle_time"`
	// Every and MaxUp are the schedule: up every Every for at most MaxUp.
	Every Duration `json:"every"`
	MaxUp Duration `json:"max_up"`
	// ReleaseMethod asks the ISP for held inbound mail: etrn, finger or
	// none; ReleaseDomains are the domains named (empty: every domain of
	// the box that is not an alias).
	ReleaseMethod  string   `json:"release_method"`
	ReleaseDomains []string `json:"release_domains"`
	// ReleaseTimeout bounds the ETRN or finger conversation.
	ReleaseTimeout Duration `json:"release_timeout"`
	// ISPNetworks are the ISP's mail hosts (CIDRs) whose inbound sessions
	// keep the link up; the mail host's address always counts.
	ISPNetworks []string `json:"isp_networks"`
	// RelayDomains are domains the box is backup MX for: their mail is
	// accepted and held until an authorized ETRN.
	RelayDomains []string `json:"relay_domains"`
	// ETRNNetworks (CIDRs) and ETRNUsers (logged-in users) may send ETRN
	// for the relay domains.
	ETRNNetworks []string `json:"etrn_networks"`
	ETRNUsers    []string `json:"etrn_users"`
	// ReleaseWindow is how long a relay domain stays open after an ETRN.
	ReleaseWindow Duration `json:"release_window"`
}

// DefaultReleaseWindow is how long a relay domain's mail flows after ETRN.
const DefaultReleaseWindow = 5 * time.Minute

// DefaultLink returns the link defaults: the link manager's own, always on.
func DefaultLink() Link {
	return Link{
		Mode:           string(link.Always),
		CommandTimeout: Duration(link.DefaultCommandTimeout),
		ConfirmTimeout: Duration(link.DefaultConfirmTimeout),
		Retries:        link.DefaultRetries,
		RetryWait:      Duration(link.DefaultRetryWait),
		RedialWait:     Duration(link.DefaultRedialWait),
		MaxRedialWait:  Duration(link.DefaultMaxRedialWait),
		IdleTime:       Duration(link.DefaultIdleTime),
		Every:          Duration(link.DefaultEvery),
		MaxUp:          Duration(link.DefaultMaxUp),
		ReleaseMethod:  link.MethodETRN,
		ReleaseTimeout: Duration(link.DefaultReleaseTimeout),
		ReleaseWindow:  Duration(DefaultReleaseWindow),
	}
}

func (l *Link) validate(p string, c *Config) Errors {
	var errs Errors
	if !slices.Contains([]string{string(link.Always), string(link.Schedule), string(link.OnDemand)}, l.Mode) {
		errs = append(errs, fieldErr(p+".mode", "must be always, schedule or on-demand, not %q", l.Mode))
	}
	if !slices.Contains([]string{link.MethodETRN, link.MethodFinger, link.MethodNone}, l.ReleaseMethod) {
		errs = append(errs, fieldErr(p+".release_method", "must be etrn, finger or none, not %q", l.ReleaseMethod))
	}
	if l.MailHost != "" {
		host, port, err := net.SplitHostPort(l.MailHost)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			errs = append(errs, fieldErr(p+".mail_host", "%q is not host:port (e.g. mx.isp.example:25)", l.MailHost))
		}
	} else if l.Mode != string(link.Always) {
		errs = append(errs, fieldErr(p+".mail_host", "the ISP's mail host is needed to know the link is up (e.g. mx.isp.example:25)"))
	}
	for _, d := range []struct {
		f        string
		v        Duration
		min, max time.Duration
	}{
		{"command_timeout", l.CommandTimeout, time.Second, 10 * time.Minute},
		{"confirm_timeout", l.ConfirmTimeout, time.Second, 10 * time.Minute},
		{"retry_wait", l.RetryWait, 0, time.Hour},
		{"redial_wait", l.RedialWait, time.Second, 24 * time.Hour},
		{"max_redial_wait", l.MaxRedialWait, time.Second, 24 * time.Hour},
		{"idle_time", l.IdleTime, time.Second, 24 * time.Hour},
		{"every", l.Every, 10 * time.Second, 7 * 24 * time.Hour},
		{"max_up", l.MaxUp, time.Second, 24 * time.Hour},
		{"release_window", l.ReleaseWindow, time.Second, 24 * time.Hour},
		{"release_timeout", l.ReleaseTimeout, time.Second, 10 * time.Minute},
	} {
		if d.v.D() < d.min || d.v.D() > d.max {
			errs = append(errs, fieldErr(p+"."+d.f, "must be between %s and %s, not %s", d.min, d.max, d.v))
		}
	}
	if l.MaxRedialWait < l.RedialWait {
		errs = append(errs, fieldErr(p+".max_redial_wait", "must not be shorter than link.redial_wait (%s), not %s", l.RedialWait, l.MaxRedialWait))
	}
	if l.Retries < 0 || l.Retries > 100 {
		errs = append(errs, fieldErr(p+".retries", "must be between 0 and 100, not %d", l.Retries))
	}
	for _, f := range []struct {
		name string
		list []string
	}{{"release_domains", l.ReleaseDomains}, {"relay_domains", l.RelayDomains}} {
		for i, d := range f.list {
			if err := checkDomainName(d); err != nil {
				errs = append(errs, fieldErr(fmt.Sprintf("%s.%s[%d]", p, f.name, i), "%v", err))
			}
		}
	}
	for i, d := range l.RelayDomains {
		if slices.ContainsFunc(c.Domains, func(x Domain) bool { return x.Name == d }) {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.relay_domains[%d]", p, i), "%s is one of the box's own domains; a relay domain is held for another server", d))
		}
	}
	errs = append(errs, checkTrustedNetworks(p+".etrn_networks", l.ETRNNetworks)...)
	for i, n := range l.ISPNetworks {
		if _, err := parseCIDR(n); err != nil {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.isp_networks[%d]", p, i), "%v", err))
		}
	}
	for i, u := range l.ETRNUsers {
		if !slices.ContainsFunc(c.Users, func(x User) bool { return x.Name == u }) {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.etrn_users[%d]", p, i), "no user %q", u))
		}
	}
	return errs
}

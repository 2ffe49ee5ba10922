package appliance

import (
	"context"
	"net/netip"
	"path/filepath"

	"concierge/appliance/config"
	"concierge/smtpd/route"
	"concierge/smtpd/srs"
)

// directory is the SMTP server's smtpd.Directory: the address policy of
// smtpd/route over one configuration snapshot, and the password check.
type directory struct {
	*route.Directory
	users *Users
}

// newDirectory builds the directory of one configuration. With a nil env
// it answers address questions only (no mailboxes, SRS or logins).
func newDirectory(env *Env, cfg *config.Config) *directory {
	if env == nil {
		env = &Env{}
	}
	return &directory{Directory: route.New(routeData(env, cfg)), users: env.Users}
}

// Authenticate checks a login (a user name or an address of one user).
func (d *directory) Authenticate(ctx context.Context, login, pw string, ip netip.Addr) (string, error) {
	return d.users.Authenticate(ctx, login, pw, ip)
}

// routeData copies the address settings into the form smtpd/route reads.
func routeData(env *Env, cfg *config.Config) route.Data {
	d := route.Data{Postmaster: cfg.PostmasterUser(), MailRoot: filepath.Join(env.DataDir, "mail")}
	for _, dom := range cfg.Domains {
		d.Domains = append(d.Domains, route.Domain{Name: dom.Name, AliasOf: dom.AliasOf})
	}
	for _, u := range cfg.Users {
		d.Users = append(d.Users, u.Name)
	}
	for _, a := range cfg.Aliases {
		d.Aliases = append(d.Aliases, route.Alias{Address: a.Address, Targets: a.Targets})
	}
	if p := cfg.PrimaryDomain(); p != "" && len(env.SRSKey) > 0 {
		d.SRS = &srs.Rewriter{Key: env.SRSKey, Domain: p}
	}
	return d
}

package appliance

import (
	"context"
	"net/netip"
	"strings"

	"concierge/appliance/config"
	"concierge/internal/mailaddr"
)

// directory answers address questions over one configuration snapshot.
// Users' addresses are NAME@ the primary domain and NAME@ each domain that
// is an alias of it; other domains have postmaster@, their aliases and
// catch-alls. Local parts are matched without regard to case.
type directory struct {
	env     *Env
	cfg     *config.Config
	primary string
	canon   map[string]string   // local domain → the domain it stands for
	aliases map[string][]string // lower-cased address or "@domain" → targets
	users   map[string]bool
}

func newDirectory(env *Env, cfg *config.Config) *directory {
	d := &directory{env: env, cfg: cfg, primary: cfg.PrimaryDomain(),
		canon: map[string]string{}, aliases: map[string][]string{}, users: map[string]bool{}}
	for _, dom := range cfg.Domains {
		c := dom.Name
		if dom.AliasOf != "" {
			c = dom.AliasOf
		}
		d.canon[dom.Name] = c
	}
	for _, a := range cfg.Aliases {
		d.aliases[strings.ToLower(a.Address)] = a.Targets
	}
	for _, u := range cfg.Users {
		d.users[u.Name] = true
	}
	return d
}

func (d *directory) IsLocalDomain(dom string) bool { _, ok := d.canon[dom]; return ok }

func (d *directory) Maildir(user string) string { return d.env.MailDir(user) }

func (d *directory) Authenticate(ctx context.Context, login, pw string, ip netip.Addr) (string, error) {
	return d.env.Users.Authenticate(ctx, login, pw, ip)
}

// maxAliasDepth bounds alias chains (and breaks loops).
const maxAliasDepth = 8

func (d *directory) Lookup(a mailaddr.Address) (users, remote []string, ok bool) {
	seen := map[string]bool{}
	ok = d.expand(a, 0, seen, &users, &remote)
	return users, remote, ok
}

func (d *directory) expand(a mailaddr.Address, depth int, seen map[string]bool, users, remote *[]string) bool {
	canon, local := d.canon[a.Domain], strings.ToLower(a.Local)
	if canon == "" {
		*remote = appendOnce(*remote, a.String())
		return true
	}
	key := local + "@" + a.Domain
	if seen[key] || depth > maxAliasDepth {
		return false
	}
	seen[key] = true
	// RFC 5321 4.5.1: postmaster@ every local domain always exists.
	if local == "postmaster" {
		if pm := d.cfg.PostmasterUser(); pm != "" {
			*users = appendOnce(*users, pm)
			return true
		}
		return false
	}
	targets, found := d.aliases[key]
	if !found {
		targets, found = d.aliases[local+"@"+canon]
	}
	if !found && canon == d.primary && d.users[local] {
		*users = appendOnce(*users, local)
		return true
	}
	if !found {
		targets, found = d.aliases["@"+a.Domain]
	}
	if !found {
		targets, found = d.aliases["@"+canon]
	}
	if !found {
		return false
	}
	any := false
	for _, t := range targets {
		if !strings.Contains(t, "@") {
			if d.users[t] {
				*users = appendOnce(*users, t)
				any = true
			}
			continue
		}
		ta, err := mailaddr.Parse(t)
		if err == nil && d.expand(ta, depth+1, seen, users, remote) {
			any = true
		}
	}
	return any
}

func appendOnce(list []string, s string) []string {
	for _, e := range list {
		if e == s {
			return list
		}
	}
	return append(list, s)
}

func (d *directory) CanSendAs(user string, a mailaddr.Address) bool {
	for _, own := range d.cfg.AddressesOf(user) {
		if strings.EqualFold(own, a.String()) {
			return true
		}
	}
	return false
}

// Package route is the box's mail policy about addresses, apart from the
// protocols: which domains are local, what a local address delivers to
// (users, aliases, catch-alls, postmaster@ of RFC 5321 4.5.1, SRS bounce
// addresses), which addresses a user may send as, and where a delivery
// status notification goes. It works over a plain Data value that the
// appliance fills from its settings; it knows nothing of the settings
// file.
package route

import (
	"path/filepath"
	"slices"
	"strings"

	"concierge/internal/mailaddr"
	"concierge/smtpd/srs"
)

// Data is everything the directory needs to know.
type Data struct {
	// Domains are the local domains; the first is the primary one, where
	// users' addresses live (NAME@primary, and NAME@ each alias of it).
	Domains []Domain
	// Users are the mailbox owners.
	Users []string
	// Aliases deliver an address, or "@domain" for a catch-all, to
	// targets: user names or addresses.
	Aliases []Alias
	// Postmaster is the user who receives postmaster@ mail and the
	// notices nobody else can take; "" when there is none.
	Postmaster string
	// MailRoot holds one Maildir per user (MailRoot/NAME).
	MailRoot string
	// SRS, when set, makes the SRS addresses at the primary domain
	// deliverable: a valid one reverses to the original sender.
	SRS *srs.Rewriter
}

// Domain is a local domain; AliasOf names the domain it stands for.
type Domain struct {
	Name    string
	AliasOf string
}

// Alias delivers Address to Targets.
type Alias struct {
	Address string
	Targets []string
}

// Directory answers address questions over one Data snapshot. Local parts
// are matched without regard to case.
type Directory struct {
	data    Data
	primary string
	canon   map[string]string   // local domain → the domain it stands for
	aliases map[string][]string // lower-cased address or "@domain" → targets
	users   map[string]bool
}

// New builds a directory; d must not change afterwards.
func New(d Data) *Directory {
	dir := &Directory{data: d, canon: map[string]string{}, aliases: map[string][]string{}, users: map[string]bool{}}
	if len(d.Domains) > 0 {
		dir.primary = d.Domains[0].Name
	}
	for _, dom := range d.Domains {
		c := dom.Name
		if dom.AliasOf != "" {
			c = dom.AliasOf
		}
		dir.canon[dom.Name] = c
	}
	for _, a := range d.Aliases {
		dir.aliases[strings.ToLower(a.Address)] = a.Targets
	}
	for _, u := range d.Users {
		dir.users[u] = true
	}
	return dir
}

// Primary is the primary domain, "" when there is none.
func (d *Directory) Primary() string { return d.primary }

// Postmaster is the user who receives postmaster@ mail, or "".
func (d *Directory) Postmaster() string { return d.data.Postmaster }

// IsLocalDomain reports whether mail for domain is delivered here.
func (d *Directory) IsLocalDomain(dom string) bool { _, ok := d.canon[dom]; return ok }

// Maildir is the Maildir directory of a user.
func (d *Directory) Maildir(user string) string { return filepath.Join(d.data.MailRoot, user) }

// maxAliasDepth bounds alias chains (and breaks loops).
const maxAliasDepth = 8

// Lookup resolves an address at a local domain into local users and
// remote addresses; ok is false when the address does not exist. An
// address at a remote domain is returned as remote.
func (d *Directory) Lookup(a mailaddr.Address) (users, remote []string, ok bool) {
	seen := map[string]bool{}
	ok = d.expand(a, 0, seen, &users, &remote)
	return users, remote, ok
}

func (d *Directory) expand(a mailaddr.Address, depth int, seen map[string]bool, users, remote *[]string) bool {
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
		if pm := d.data.Postmaster; pm != "" {
			*users = appendOnce(*users, pm)
			return true
		}
		return false
	}
	if a.Domain == d.primary && srs.IsSRS(a.Local) {
		// A bounce to an address we made for forwarded mail: valid ones
		// go back to the original sender, the rest do not exist.
		if d.data.SRS == nil {
			return false
		}
		orig, err := d.data.SRS.Reverse(a.Local)
		if err != nil {
			return false
		}
		*remote = appendOnce(*remote, orig)
		return true
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
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// AddressesOf lists the addresses a user may send as: NAME@ the primary
// domain and its alias domains, and every alias that delivers to the
// user by name.
func (d *Directory) AddressesOf(user string) []string {
	var out []string
	if d.primary != "" {
		for _, dom := range d.data.Domains {
			if dom.Name == d.primary || dom.AliasOf == d.primary {
				out = append(out, user+"@"+dom.Name)
			}
		}
	}
	for _, a := range d.data.Aliases {
		if !strings.HasPrefix(a.Address, "@") && slices.Contains(a.Targets, user) {
			out = append(out, a.Address)
		}
	}
	return out
}

// CanSendAs reports whether user may use a as envelope sender.
func (d *Directory) CanSendAs(user string, a mailaddr.Address) bool {
	return slices.ContainsFunc(d.AddressesOf(user), func(own string) bool { return strings.EqualFold(own, a.String()) })
}

// ForwardSender is the envelope sender for mail from sender that our
// aliases forward to other domains: an SRS address at the primary domain,
// unless the sender is local (our own domain passes the next hop's checks
// and takes its own bounces) or null.
func (d *Directory) ForwardSender(sender string) string {
	a, err := mailaddr.Parse(sender)
	if sender == "" || err != nil || d.IsLocalDomain(a.Domain) || d.data.SRS == nil {
		return sender
	}
	return d.data.SRS.Forward(sender)
}

package config

import (
	"fmt"
	"slices"
	"strings"

	"concierge/internal/mailaddr"
)

// The edit methods below are the settings API shared by the CLI and the
// setup page. Each checks its input and names the field in its error; the
// caller (Store.Update) validates the whole result before saving.

// AddDomain adds a mail domain; aliasOf names the domain it stands for.
func (c *Config) AddDomain(name, aliasOf string) error {
	d := normalizeDomain(name)
	if err := checkDomainName(d); err != nil {
		return fieldErr("domain", "%v", err)
	}
	if c.Domain(d) != nil {
		return fieldErr("domain", "%q already exists", d)
	}
	aliasOf = normalizeDomain(aliasOf)
	if err := c.checkAliasOf(d, aliasOf, len(c.Domains) == 0); err != nil {
		return fieldErr("alias-of", "%v", err)
	}
	c.Domains = append(c.Domains, Domain{Name: d, AliasOf: aliasOf})
	return nil
}

// DelDomain removes a domain. It refuses while aliases or alias domains
// still depend on it, or when it is the primary domain and others remain.
func (c *Config) DelDomain(name string) error {
	name = strings.ToLower(name)
	i := slices.IndexFunc(c.Domains, func(d Domain) bool { return d.Name == name })
	if i < 0 {
		return fieldErr("domain", "%q does not exist", name)
	}
	for _, d := range c.Domains {
		if d.AliasOf == name {
			return fieldErr("domain", "%q is still the target of alias domain %q; delete that first", name, d.Name)
		}
	}
	if i == 0 && len(c.Domains) > 1 {
		return fieldErr("domain", "%q is the primary domain; delete the other domains first", name)
	}
	for _, a := range c.Aliases {
		if strings.HasSuffix(a.Address, "@"+name) {
			return fieldErr("domain", "alias %q still uses %q; delete it first", a.Address, name)
		}
	}
	c.Domains = slices.Delete(c.Domains, i, i+1)
	return nil
}

// AddUser adds a user with a password.
func (c *Config) AddUser(name, password string) error {
	if err := checkUserName(name); err != nil {
		return fieldErr("user", "%v", err)
	}
	if c.User(name) != nil {
		return fieldErr("user", "%q already exists", name)
	}
	if err := CheckPassword(name, password); err != nil {
		return err
	}
	c.Users = append(c.Users, User{Name: name, Hash: HashPassword(password)})
	return nil
}

// SetPassword changes a user's password.
func (c *Config) SetPassword(name, password string) error {
	u := c.User(name)
	if u == nil {
		return fieldErr("user", "%q does not exist", name)
	}
	if err := CheckPassword(name, password); err != nil {
		return err
	}
	u.Hash = HashPassword(password)
	return nil
}

// DelUser removes a user. Aliases that point at the user must go first
// (mail must not silently go nowhere). The mailbox on disk is kept.
func (c *Config) DelUser(name string) error {
	i := slices.IndexFunc(c.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return fieldErr("user", "%q does not exist", name)
	}
	for _, a := range c.Aliases {
		if slices.Contains(a.Targets, name) {
			return fieldErr("user", "alias %q still delivers to %q; change or delete it first", a.Address, name)
		}
	}
	if c.Postmaster == name {
		return fieldErr("user", "%q receives postmaster mail; set postmaster to another user first", name)
	}
	c.Users = slices.Delete(c.Users, i, i+1)
	return nil
}

// AddAlias adds targets to an alias address, creating it if needed.
func (c *Config) AddAlias(address string, targets []string) error {
	address = normalizeAliasAddress(address)
	if err := c.checkAliasAddress(address); err != nil {
		return fieldErr("address", "%v", err)
	}
	if len(targets) == 0 {
		return fieldErr("target", "give at least one user name or address")
	}
	for _, t := range targets {
		if err := c.checkTarget(t); err != nil {
			return fieldErr("target", "%v", err)
		}
	}
	for i := range c.Aliases {
		if c.Aliases[i].Address == address {
			for _, t := range targets {
				if !slices.Contains(c.Aliases[i].Targets, t) {
					c.Aliases[i].Targets = append(c.Aliases[i].Targets, t)
				}
			}
			return nil
		}
	}
	c.Aliases = append(c.Aliases, Alias{Address: address, Targets: slices.Compact(targets)})
	return nil
}

// DelAlias removes targets from an alias, or the whole alias when no
// targets are given.
func (c *Config) DelAlias(address string, targets []string) error {
	address = normalizeAliasAddress(address)
	i := slices.IndexFunc(c.Aliases, func(a Alias) bool { return a.Address == address })
	if i < 0 {
		return fieldErr("address", "alias %q does not exist", address)
	}
	if len(targets) == 0 {
		c.Aliases = slices.Delete(c.Aliases, i, i+1)
		return nil
	}
	for _, t := range targets {
		j := slices.Index(c.Aliases[i].Targets, t)
		if j < 0 {
			return fieldErr("target", "%q is not a target of %q", t, address)
		}
		c.Aliases[i].Targets = slices.Delete(c.Aliases[i].Targets, j, j+1)
	}
	if len(c.Aliases[i].Targets) == 0 {
		c.Aliases = slices.Delete(c.Aliases, i, i+1)
	}
	return nil
}

func normalizeAliasAddress(a string) string {
	if strings.HasPrefix(a, "@") {
		return strings.ToLower(a)
	}
	if p, err := mailaddr.Parse(a); err == nil {
		// Local parts are matched without regard to case.
		return strings.ToLower(p.String())
	}
	return a
}

// AddRelayNetwork lets a network relay without AUTH.
func (c *Config) AddRelayNetwork(cidr string) error {
	p, err := checkTrustedNetwork(cidr)
	if err != nil {
		return fieldErr("relay", "%v", err)
	}
	if slices.Contains(c.RelayNetworks, p.String()) {
		return fieldErr("relay", "%s is already a relay network", p)
	}
	c.RelayNetworks = append(c.RelayNetworks, p.String())
	return nil
}

// DelRelayNetwork removes a relay network.
func (c *Config) DelRelayNetwork(cidr string) error {
	p, err := parseCIDR(cidr)
	if err != nil {
		return fieldErr("relay", "%v", err)
	}
	i := slices.Index(c.RelayNetworks, p.String())
	if i < 0 {
		return fieldErr("relay", "%s is not a relay network", p)
	}
	c.RelayNetworks = slices.Delete(c.RelayNetworks, i, i+1)
	return nil
}

// AddressesOf lists the addresses a user may send as: NAME@ the primary
// domain and its alias domains, and every alias that delivers to the user.
func (c *Config) AddressesOf(user string) []string {
	var out []string
	if p := c.PrimaryDomain(); p != "" {
		for _, d := range c.Domains {
			if d.Name == p || d.AliasOf == p {
				out = append(out, user+"@"+d.Name)
			}
		}
	}
	for _, a := range c.Aliases {
		if !strings.HasPrefix(a.Address, "@") && slices.Contains(a.Targets, user) {
			out = append(out, a.Address)
		}
	}
	return out
}

// String gives a short description used by list commands.
func (d Domain) String() string {
	if d.AliasOf != "" {
		return fmt.Sprintf("%s (alias of %s)", d.Name, d.AliasOf)
	}
	return d.Name
}

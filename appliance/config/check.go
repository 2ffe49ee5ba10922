package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"concierge/internal/mailaddr"
)

func itoa(i int) string { return strconv.Itoa(i) }

func checkHostname(h string) error {
	if h == "" {
		return errors.New("is empty")
	}
	if strings.HasPrefix(h, "[") {
		return fmt.Errorf("%q is not a domain name", h)
	}
	if _, err := mailaddr.Domain(h); err != nil {
		return fmt.Errorf("%q is not a valid domain name", h)
	}
	return nil
}

// checkUserName accepts the names that make good mailbox local parts and
// directory names: a-z, 0-9, '.', '-', '_', starting with a letter or digit.
func checkUserName(n string) error {
	if n == "" {
		return errors.New("is empty")
	}
	if len(n) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", n)
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '-' || r == '_'))
		if !ok {
			return fmt.Errorf("%q: use lower-case letters, digits, '.', '-' and '_' (starting with a letter or digit)", n)
		}
	}
	if n == "postmaster" || n == "mailer-daemon" {
		return fmt.Errorf("%q is reserved", n)
	}
	return nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.PrefixFrom(a, a.BitLen()), nil
		}
		return netip.Prefix{}, fmt.Errorf("%q is not a network like 10.0.0.0/24", s)
	}
	return p.Masked(), nil
}

// ParseCIDR parses a network in CIDR form (a bare address is a /32 or /128).
func ParseCIDR(s string) (netip.Prefix, error) { return parseCIDR(s) }

// The widest networks the box trusts (relay_networks may relay without
// AUTH, pop3.trusted_networks may log in without TLS): the largest private
// ranges, 10.0.0.0/8 and fc00::/7. Anything wider takes in public
// addresses by the million and makes the box an open relay.
const (
	MinTrustedBits4 = 8
	MinTrustedBits6 = 7
)

// checkTrustedNetwork is the one check of a network the box trusts, used by
// the relay commands and by Validate (for relay_networks and
// pop3.trusted_networks). It returns the network in canonical form.
func checkTrustedNetwork(s string) (netip.Prefix, error) {
	p, err := parseCIDR(s)
	if err != nil {
		return p, err
	}
	switch {
	case p.Addr().Is4In6():
		return p, fmt.Errorf("%s: write IPv4 networks as IPv4 (like 10.0.0.0/24)", p)
	case p.Bits() == 0:
		return p, fmt.Errorf("%s is every address: it would make the box an open relay", p)
	case p.Addr().Is4() && p.Bits() < MinTrustedBits4, p.Addr().Is6() && p.Bits() < MinTrustedBits6:
		return p, fmt.Errorf("%s is wider than any office network (at most /%d for IPv4, /%d for IPv6): it would make the box an open relay",
			p, MinTrustedBits4, MinTrustedBits6)
	}
	return p, nil
}

// checkTrustedNetworks checks a list of trusted networks (field f), also
// for networks listed twice.
func checkTrustedNetworks(f string, list []string) Errors {
	var errs Errors
	seen := map[netip.Prefix]bool{}
	for i, n := range list {
		fi := f + "[" + itoa(i) + "]"
		p, err := checkTrustedNetwork(n)
		switch {
		case err != nil:
			errs = append(errs, fieldErr(fi, "%v", err))
		case seen[p]:
			errs = append(errs, fieldErr(fi, "%s is listed twice", p))
		}
		seen[p] = true
	}
	return errs
}

// checkDomainName is the one check of a mail domain's name, used by
// AddDomain (on the normalised input) and by Validate: a valid name with a
// dot, no address literal, written as the box compares it (lower case, no
// trailing dot).
func checkDomainName(d string) error {
	n, err := mailaddr.Domain(d)
	if err != nil || strings.HasPrefix(n, "[") || !strings.Contains(n, ".") {
		return fmt.Errorf("%q is not a valid domain name (like example.com)", d)
	}
	if n != d {
		return fmt.Errorf("%q must be written as %q", d, n)
	}
	return nil
}

// normalizeDomain writes a domain as checkDomainName wants it, when it can.
func normalizeDomain(d string) string {
	if n, err := mailaddr.Domain(d); err == nil {
		return n
	}
	return d
}

// checkAliasOf is the one check of a domain's alias_of, used by AddDomain
// and Validate: name (the primary domain when primary) stands for aliasOf.
func (c *Config) checkAliasOf(name, aliasOf string, primary bool) error {
	if aliasOf == "" {
		return nil
	}
	if primary {
		return errors.New("the first domain is the primary one and cannot be an alias")
	}
	if aliasOf == name {
		return errors.New("a domain cannot be an alias of itself")
	}
	p := c.Domain(aliasOf)
	switch {
	case p == nil:
		return fmt.Errorf("%q is not a configured domain", aliasOf)
	case p.AliasOf != "":
		return fmt.Errorf("%q is itself an alias of %q; name that one", aliasOf, p.AliasOf)
	}
	return nil
}

// IsLocalDomain reports whether d is one of the configured domains.
func (c *Config) IsLocalDomain(d string) bool { return c.Domain(d) != nil }

// checkAliasAddress accepts "local@domain" or "@domain" (catch-all) where
// domain is a configured domain.
func (c *Config) checkAliasAddress(a string) error {
	if strings.HasPrefix(a, "@") {
		if !c.IsLocalDomain(a[1:]) {
			return fmt.Errorf("%q: %q is not one of the box's domains", a, a[1:])
		}
		return nil
	}
	p, err := mailaddr.Parse(a)
	if err != nil {
		return fmt.Errorf("%q is not an address: %v", a, err)
	}
	if p.String() != a {
		return fmt.Errorf("%q must be written as %q", a, p.String())
	}
	if p.RelayTrick() {
		return fmt.Errorf("%q: '@', '%%' and '!' are not allowed in the local part", a)
	}
	if !c.IsLocalDomain(p.Domain) {
		return fmt.Errorf("%q: %q is not one of the box's domains", a, p.Domain)
	}
	return nil
}

// checkTarget accepts a local user name or a remote address.
func (c *Config) checkTarget(t string) error {
	if !strings.Contains(t, "@") {
		if c.User(t) == nil {
			return fmt.Errorf("%q is not a user (a target is a user name or an address)", t)
		}
		return nil
	}
	p, err := mailaddr.Parse(t)
	if err != nil {
		return fmt.Errorf("%q is not an address: %v", t, err)
	}
	if p.RelayTrick() {
		return fmt.Errorf("%q: '@', '%%' and '!' are not allowed in the local part", t)
	}
	return nil
}

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

package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"concierge/appliance/netif"
)

// Network holds the box's own addresses (see appliance/netif).
type Network struct {
	// Apply makes the server set its interfaces from these settings. On
	// the box it is on; on a workstation ("make run") it stays off, so
	// the settings are shown but not applied (serve -apply-network turns
	// it on for one run).
	Apply bool `json:"apply"`
	// RollbackAfter is how long a change that would cut the admin off
	// (it takes away the address the browser uses) waits to be confirmed
	// from the new address before it is undone by itself.
	RollbackAfter Duration `json:"rollback_after"`
	// Interfaces are the interfaces with a static address; others are
	// left as they are.
	Interfaces []Interface `json:"interfaces"`
}

// Interface is the static setting of one interface.
type Interface struct {
	Name string `json:"name"`
	// Address is the box's address with the network's prefix length,
	// such as 192.168.1.2/24.
	Address string `json:"address"`
	// Gateway is the router to the rest of the world; empty: none
	// through this interface.
	Gateway string `json:"gateway,omitempty"`
	// DNS are the name servers the box asks.
	DNS []string `json:"dns,omitempty"`
}

// DefaultNetwork returns the network defaults: nothing set, not applied.
func DefaultNetwork() Network {
	return Network{RollbackAfter: Duration(netif.DefaultRollbackAfter)}
}

// The bounds of network.rollback_after.
const (
	MinRollbackAfter = time.Second
	MaxRollbackAfter = 10 * time.Minute
)

// Interface returns the setting of the named interface, or nil.
func (n *Network) Interface(name string) *Interface {
	for i := range n.Interfaces {
		if n.Interfaces[i].Name == name {
			return &n.Interfaces[i]
		}
	}
	return nil
}

// Prefix is the interface's address; it is valid once validated.
func (i *Interface) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(i.Address)
	return p
}

// GatewayAddr is the gateway, or the zero Addr.
func (i *Interface) GatewayAddr() netip.Addr {
	a, _ := netip.ParseAddr(i.Gateway)
	return a
}

func checkIfName(n string) error {
	if n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t:") || n == "." || n == ".." {
		return fmt.Errorf("%q is not an interface name (like eth0)", n)
	}
	if n == "lo" {
		return fmt.Errorf("the loopback interface is not set here")
	}
	return nil
}

func checkIfAddress(a string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(a)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address with its prefix length, like 192.168.1.2/24", a)
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("%q: the prefix length must be between 8 and 30", a)
	}
	ad := p.Addr()
	if ad.IsLoopback() || ad.IsMulticast() || ad.IsUnspecified() || ad.IsLinkLocalUnicast() {
		return netip.Prefix{}, fmt.Errorf("%q cannot be the box's address", a)
	}
	if ad == p.Masked().Addr() || ad == netif.Broadcast(p) {
		return netip.Prefix{}, fmt.Errorf("%q is the address of the network itself or its broadcast address, not one for a host", a)
	}
	return p, nil
}

func (i *Interface) validate(f string) Errors {
	var errs Errors
	if err := checkIfName(i.Name); err != nil {
		errs = append(errs, fieldErr(f+".name", "%v", err))
	}
	p, err := checkIfAddress(i.Address)
	if err != nil {
		errs = append(errs, fieldErr(f+".address", "%v", err))
	}
	if i.Gateway != "" {
		gw, gerr := netip.ParseAddr(i.Gateway)
		switch {
		case gerr != nil || !gw.Is4():
			errs = append(errs, fieldErr(f+".gateway", "%q is not an IPv4 address", i.Gateway))
		case err == nil && (!p.Contains(gw) || gw == p.Addr() || gw == netif.Broadcast(p) || gw == p.Masked().Addr()):
			errs = append(errs, fieldErr(f+".gateway", "%s is not another host of the network %s", gw, p.Masked()))
		}
	}
	for j, d := range i.DNS {
		if a, err := netip.ParseAddr(d); err != nil || a.Zone() != "" {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.dns[%d]", f, j), "%q is not an IP address", d))
		}
	}
	return errs
}

func (n *Network) validate(p string) Errors {
	var errs Errors
	if d := n.RollbackAfter.D(); d < MinRollbackAfter || d > MaxRollbackAfter {
		errs = append(errs, fieldErr(p+".rollback_after", "must be between %s and %s, not %s", MinRollbackAfter, MaxRollbackAfter, n.RollbackAfter))
	}
	seen := map[string]bool{}
	gateways := 0
	for i := range n.Interfaces {
		ifc := &n.Interfaces[i]
		f := fmt.Sprintf("%s.interfaces[%d]", p, i)
		errs = append(errs, ifc.validate(f)...)
		if seen[ifc.Name] {
			errs = append(errs, fieldErr(f+".name", "%q is listed twice", ifc.Name))
		}
		seen[ifc.Name] = true
		if ifc.Gateway != "" {
			gateways++
			if gateways == 2 {
				errs = append(errs, fieldErr(f+".gateway", "only one interface can have the gateway (the default route)"))
			}
		}
	}
	return errs
}

// SetInterface sets the static address, gateway and name servers of an
// interface (dns: addresses separated by commas or spaces).
func (c *Config) SetInterface(name, address, gateway, dns string) error {
	if err := checkIfName(name); err != nil {
		return fieldErr("interface", "%v", err)
	}
	if _, err := checkIfAddress(address); err != nil {
		return fieldErr("address", "%v", err)
	}
	ifc := Interface{Name: name, Address: address, Gateway: gateway,
		DNS: strings.FieldsFunc(dns, func(r rune) bool { return r == ',' || r == ' ' })}
	// The checks of the form's own fields, under the form's names.
	for _, e := range ifc.validate("x") {
		fe := e.(*FieldError)
		field, _, _ := strings.Cut(strings.TrimPrefix(fe.Field, "x."), "[")
		if field != "gateway" && field != "dns" {
			field = "address"
		}
		return fieldErr(field, "%s", fe.Msg)
	}
	if gateway != "" {
		for _, o := range c.Network.Interfaces {
			if o.Name != name && o.Gateway != "" {
				return fieldErr("gateway", "%s already has the gateway %s (there is one default route)", o.Name, o.Gateway)
			}
		}
	}
	if cur := c.Network.Interface(name); cur != nil {
		*cur = ifc
	} else {
		c.Network.Interfaces = append(c.Network.Interfaces, ifc)
	}
	return nil
}

// DelInterface forgets the static setting of an interface (its address
// stays until the next start or a change by other means).
func (c *Config) DelInterface(name string) {
	c.Network.Interfaces = slices.DeleteFunc(c.Network.Interfaces, func(i Interface) bool { return i.Name == name })
}

// MoveListeners makes every listener bound to the address from listen on
// to instead (same port): the listeners follow a change of the box's
// address. It returns the settings it changed.
func (c *Config) MoveListeners(from, to netip.Addr) []string {
	var moved []string
	for _, l := range []struct {
		key string
		v   *string
	}{
		{"smtp.mx_listen", &c.SMTP.MX}, {"smtp.submission_listen", &c.SMTP.Submission}, {"smtp.submission_tls_listen", &c.SMTP.SubmissionTLS},
		{"pop3.listen", &c.POP3.Listen}, {"pop3.tls_listen", &c.POP3.ListenTLS},
		{"web.https_listen", &c.Web.HTTPSListen}, {"web.http_listen", &c.Web.HTTPListen},
	} {
		host, port, err := net.SplitHostPort(*l.v)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil && a.Unmap() == from {
			*l.v = net.JoinHostPort(to.String(), port)
			moved = append(moved, l.key)
		}
	}
	return moved
}

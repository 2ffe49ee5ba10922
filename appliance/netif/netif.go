// Package netif sets the box's network interfaces from its settings:
// IPv4 addresses, the default route and the link state, through netlink
// (github.com/vishvananda/netlink). It reads the interfaces live for the
// setup page, plans the smallest change from what an interface has to
// what it should have (Plan, a pure function), and applies it; Watch
// reports the kernel's changes of links and addresses to the services
// that follow them.
//
// A change that would cut the admin off (the address the browser uses
// goes away) runs on trial (Trial): the old address is kept beside the new
// one until the admin confirms from the new address, or the change is
// undone by itself when RollbackAfter has passed, as routers do.
package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoLink is returned for an interface the box does not have.
var ErrNoLink = errors.New("netif: no such interface")

// Link is the live state of one interface.
type Link struct {
	Name string `json:"name"`
	// Up: the interface is set up (administratively); Oper is the
	// kernel's operational state ("up", "down", "lowerlayerdown", ...),
	// which says whether a cable is in.
	Up   bool   `json:"up"`
	Oper string `json:"oper"`
	MAC  string `json:"mac,omitempty"`
	// Addrs are its IPv4 addresses in the kernel's order (the first is
	// the primary one), then its IPv6 addresses.
	Addrs []netip.Prefix `json:"addrs"`
	// Gateway is the IPv4 default route's next hop through this
	// interface, if there is one.
	Gateway netip.Addr `json:"gateway,omitzero"`
}

// IPv4 returns the link's IPv4 addresses, primary first.
func (l Link) IPv4() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range l.Addrs {
		if p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return out
}

// Links reads every interface but loopback.
func Links() ([]Link, error) {
	all, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netif: %w", err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("netif: %w", err)
	}
	var out []Link
	for _, nl := range all {
		a := nl.Attrs()
		if a.Flags&net.FlagLoopback != 0 {
			continue
		}
		l, err := describe(nl, routes)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// Get reads one interface.
func Get(name string) (Link, error) {
	nl, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Link{}, fmt.Errorf("%w: %s", ErrNoLink, name)
		}
		return Link{}, fmt.Errorf("netif: %s: %w", name, err)
	}
	routes, err := netlink.RouteList(nl, netlink.FAMILY_V4)
	if err != nil {
		return Link{}, fmt.Errorf("netif: %w", err)
	}
	return describe(nl, routes)
}

func describe(nl netlink.Link, routes []netlink.Route) (Link, error) {
	a := nl.Attrs()
	l := Link{Name: a.Name, Up: a.Flags&net.FlagUp != 0, Oper: a.OperState.String()}
	if len(a.HardwareAddr) > 0 {
		l.MAC = a.HardwareAddr.String()
	}
	addrs, err := netlink.AddrList(nl, netlink.FAMILY_ALL)
	if err != nil {
		return Link{}, fmt.Errorf("netif: %s: %w", a.Name, err)
	}
	var v6 []netip.Prefix
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		bits, _ := ad.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), bits)
		if p.Addr().Is4() {
			l.Addrs = append(l.Addrs, p)
		} else {
			v6 = append(v6, p)
		}
	}
	l.Addrs = append(l.Addrs, v6...)
	for _, r := range routes {
		if r.LinkIndex == a.Index && isDefault(r) && r.Gw != nil {
			if gw, ok := netip.AddrFromSlice(r.Gw); ok {
				l.Gateway = gw.Unmap()
			}
		}
	}
	return l, nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// Want is what one interface should have.
type Want struct {
	Link string
	// Prefix is its address and network; the only IPv4 address it keeps
	// besides Keep.
	Prefix netip.Prefix
	// Gateway, when valid, is the IPv4 default route through it; when
	// not, routes are left as they are.
	Gateway netip.Addr
	// Keep are addresses kept beside Prefix, after it (the old address
	// during a trial).
	Keep []netip.Prefix
}

// StepKind is one kind of change.
type StepKind int

// The changes Plan makes, in the order it makes them.
const (
	LinkUp StepKind = iota
	AddrDel
	AddrAdd
	RouteReplace
)

func (k StepKind) String() string {
	return [...]string{"link up", "delete address", "add address", "default route"}[k]
}

// Step is one change to one interface.
type Step struct {
	Kind   StepKind
	Prefix netip.Prefix // AddrDel, AddrAdd
	Via    netip.Addr   // RouteReplace
}

func (s Step) String() string {
	switch s.Kind {
	case AddrDel, AddrAdd:
		return s.Kind.String() + " " + s.Prefix.String()
	case RouteReplace:
		return s.Kind.String() + " via " + s.Via.String()
	}
	return s.Kind.String()
}

// Plan lists the steps that take have to want: the link up, IPv4
// addresses that are not wanted deleted, the wanted ones added with
// want.Prefix first (the primary address, the one NetBIOS and the
// interface's own traffic use), and the default route. When want.Prefix
// is missing, the kept addresses are deleted and added again after it,
// so that it becomes the primary one.
func Plan(have Link, want Want) []Step {
	var steps []Step
	if !have.Up {
		steps = append(steps, Step{Kind: LinkUp})
	}
	cur := have.IPv4()
	wanted := append([]netip.Prefix{want.Prefix}, want.Keep...)
	primaryMissing := !slices.Contains(cur, want.Prefix)
	var add []netip.Prefix
	for _, p := range cur {
		if !slices.Contains(wanted, p) || primaryMissing {
			steps = append(steps, Step{Kind: AddrDel, Prefix: p})
		}
	}
	for _, p := range wanted {
		if (primaryMissing || !slices.Contains(cur, p)) && !slices.Contains(add, p) {
			add = append(add, p)
			steps = append(steps, Step{Kind: AddrAdd, Prefix: p})
		}
	}
	if want.Gateway.IsValid() && want.Gateway != have.Gateway {
		steps = append(steps, Step{Kind: RouteReplace, Via: want.Gateway})
	}
	return steps
}

// maxRounds bounds Apply's plan-and-apply rounds: deleting a primary
// address also deletes the secondaries of its network, which the next
// round puts back.
const maxRounds = 3

// Apply brings the interface to want and returns the steps it took.
func Apply(want Want) ([]Step, error) {
	if !want.Prefix.IsValid() || !want.Prefix.Addr().Is4() {
		return nil, fmt.Errorf("netif: %s: %v is not an IPv4 address with a prefix length", want.Link, want.Prefix)
	}
	var done []Step
	for range maxRounds {
		have, err := Get(want.Link)
		if err != nil {
			return done, err
		}
		steps := Plan(have, want)
		if len(steps) == 0 {
			return done, nil
		}
		nl, err := netlink.LinkByName(want.Link)
		if err != nil {
			return done, fmt.Errorf("netif: %s: %w", want.Link, err)
		}
		for _, s := range steps {
			if err := do(nl, s); err != nil {
				return done, fmt.Errorf("netif: %s: %s: %w", want.Link, s, err)
			}
			done = append(done, s)
		}
	}
	return done, fmt.Errorf("netif: %s does not keep its addresses (tried %d times)", want.Link, maxRounds)
}

func do(nl netlink.Link, s Step) error {
	switch s.Kind {
	case LinkUp:
		return netlink.LinkSetUp(nl)
	case AddrDel:
		err := netlink.AddrDel(nl, addr(s.Prefix))
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil // gone with the primary address of its network
		}
		return err
	case AddrAdd:
		err := netlink.AddrAdd(nl, addr(s.Prefix))
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return err
	case RouteReplace:
		_, any4, _ := net.ParseCIDR("0.0.0.0/0")
		return netlink.RouteReplace(&netlink.Route{LinkIndex: nl.Attrs().Index, Dst: any4, Gw: s.Via.AsSlice()})
	}
	return fmt.Errorf("unknown step %d", s.Kind)
}

// addr is a netlink address with its broadcast address (without one,
// broadcasts such as NetBIOS name queries go nowhere).
func addr(p netip.Prefix) *netlink.Addr {
	ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
	a := &netlink.Addr{IPNet: ipn}
	if p.Bits() < 31 {
		a.Broadcast = Broadcast(p).AsSlice()
	}
	return a
}

// Broadcast is the broadcast address of an IPv4 network.
func Broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}

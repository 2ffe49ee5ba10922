package diag

import (
	"fmt"
	"net"
	"net/netip"
)

// routeProbe is an address outside every network of the box (TEST-NET-2,
// RFC 5737): the source address the kernel picks to reach it is the
// address of the interface with the default route. Nothing is sent.
var routeProbe = netip.MustParseAddrPort("198.51.100.1:25")

// LocalAddrs returns the box's own addresses.
func LocalAddrs() []netip.Addr {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ia := range ifaddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			out = appendNew(out, p.Addr().Unmap())
		}
	}
	return out
}

// WANAddress returns the address of the interface with the default route
// and a description of where it came from, or an error when the box has
// no default route.
func WANAddress() (netip.Addr, string, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(routeProbe))
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("no route to the Internet: %v", err)
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	from := "the interface with the default route"
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			for _, ia := range addrs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
					from = "interface " + i.Name + ", which has the default route"
				}
			}
		}
	}
	return a, from, nil
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Private reports whether a cannot be reached from the Internet: a
// private (RFC 1918, RFC 4193), carrier-grade NAT, loopback or link-local
// address.
func Private(a netip.Addr) bool {
	return a.IsPrivate() || cgnat.Contains(a) || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified()
}

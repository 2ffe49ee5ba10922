// Package hostaddr turns a "host:port" that names a host into one with
// an address, through a lookup the caller gives: the box has no
// /etc/resolv.conf, so the appliance looks names up through the DNS
// servers of its settings rather than the system's resolver.
package hostaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Lookup resolves a host name to its addresses.
type Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

// Resolve returns hostport with its host name replaced by the first
// address lookup gives, keeping the port (defPort when hostport has
// none). An address, or anything when lookup is nil, comes back as it
// is, for the system's resolver to handle.
func Resolve(ctx context.Context, lookup Lookup, hostport, defPort string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, defPort
	}
	if _, err := netip.ParseAddr(host); err == nil || lookup == nil {
		return hostport, nil
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return "", fmt.Errorf("looking up %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("looking up %s: no address", host)
	}
	return net.JoinHostPort(addrs[0].String(), port), nil
}

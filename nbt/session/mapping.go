package session

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"concierge/nbt/wire"
)

// ParseName reads a name written NAME#xx (xx the suffix in hex, as
// nmblookup writes it); without #xx the suffix is 0x20 (server).
func ParseName(s, scope string) (wire.Name, error) {
	base, suffix := s, byte(0x20)
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		v, err := strconv.ParseUint(s[i+1:], 16, 8)
		if err != nil || len(s[i+1:]) != 2 {
			return wire.Name{}, fmt.Errorf("session: %q: the suffix after # must be two hex digits", s)
		}
		base, suffix = s[:i], byte(v)
	}
	if base == "*" || strings.ContainsAny(base, " .") {
		return wire.Name{}, fmt.Errorf("session: %q is not a NetBIOS name", s)
	}
	n, err := wire.MakeName(base, suffix, scope)
	if err != nil {
		return wire.Name{}, fmt.Errorf("session: %q: %w", s, err)
	}
	return n, nil
}

// ParseGateway reads "NAME#20=host:port".
func ParseGateway(s, scope string) (Gateway, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		return Gateway{}, fmt.Errorf("session: %q is not NAME#20=host:port", s)
	}
	n, err := ParseName(strings.TrimSpace(name), scope)
	if err != nil {
		return Gateway{}, err
	}
	addr = strings.TrimSpace(addr)
	host, port, err := net.SplitHostPort(addr)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return Gateway{}, fmt.Errorf("session: %q: %q is not host:port", s, addr)
	}
	return Gateway{Name: n, Addr: addr}, nil
}

// ParseRetarget reads "NAME#20=ip:port" (an IPv4 address).
func ParseRetarget(s, scope string) (Retarget, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		return Retarget{}, fmt.Errorf("session: %q is not NAME#20=ip:port", s)
	}
	n, err := ParseName(strings.TrimSpace(name), scope)
	if err != nil {
		return Retarget{}, err
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(addr))
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return Retarget{}, fmt.Errorf("session: %q: %q is not an IPv4 address and port", s, addr)
	}
	return Retarget{Name: n, To: ap}, nil
}

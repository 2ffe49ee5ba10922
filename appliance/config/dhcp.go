package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"concierge/dhcpd"
)

// DHCP holds the settings of the LAN's DHCP server (dhcpd).
type DHCP struct {
	// Enabled turns the DHCP server on. Off by default: another DHCP
	// server (the office router) usually serves the LAN already, and two
	// hand out conflicting addresses. Turning it on checks for one.
	Enabled bool `json:"enabled"`
	// Interface is the LAN interface to serve; empty means the one
	// interface with a private IPv4 address.
	Interface string `json:"interface"`
	// RangeStart and RangeEnd bound the addresses handed out; empty
	// means the bound of the default pool, the upper half of the
	// interface's subnet (.128 to .254 on a /24). The server checks at
	// start that the range lies in the subnet.
	RangeStart string `json:"range_start"`
	RangeEnd   string `json:"range_end"`
	// LeaseTime is how long a client may keep its address unrenewed.
	LeaseTime Duration `json:"lease_time"`
	// Router is the default gateway given to clients (option 3); empty
	// gives none.
	Router string `json:"router"`
	// DNSServers are given to clients (option 6).
	DNSServers []string `json:"dns_servers"`
	// Domain is the clients' DNS domain (option 15).
	Domain string `json:"domain"`
	// Reservations give a client a fixed address, each "MAC=IP"
	// (52:54:00:12:34:56=192.168.1.20).
	Reservations []string `json:"reservations"`
	// WINS are the NetBIOS name servers given to clients (option 44);
	// empty means the box itself on the LAN interface.
	WINS []string `json:"wins"`
	// ProbeTimeout is how long the server waits for an answer to the
	// ICMP echo it sends to an address before first offering it; 0 turns
	// the probe off.
	ProbeTimeout Duration `json:"probe_timeout"`
}

// DefaultDHCP returns the DHCP defaults; the server's own are in dhcpd.
func DefaultDHCP() DHCP {
	return DHCP{LeaseTime: Duration(dhcpd.DefaultLeaseTime), ProbeTimeout: Duration(dhcpd.DefaultProbeTimeout)}
}

// ParseReservation reads one "MAC=IP" reservation.
func ParseReservation(s string) (net.HardwareAddr, netip.Addr, error) {
	m, a, ok := strings.Cut(s, "=")
	if !ok {
		return nil, netip.Addr{}, fmt.Errorf("%q is not MAC=IP (like 52:54:00:12:34:56=192.168.1.20)", s)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(m))
	if err != nil || len(mac) != 6 {
		return nil, netip.Addr{}, fmt.Errorf("%q is not an Ethernet address like 52:54:00:12:34:56", m)
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(a))
	if err != nil || !ip.Is4() {
		return nil, netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", a)
	}
	return mac, ip, nil
}

// parseIPv4 reads a unicast IPv4 address.
func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address like 192.168.1.1", s)
	}
	return a, nil
}

func (d *DHCP) validate(p string) Errors {
	var errs Errors
	add := func(f, format string, args ...any) { errs = append(errs, fieldErr(p+"."+f, format, args...)) }
	if n := d.Interface; n != "" && (len(n) > 15 || strings.ContainsAny(n, "/ \t")) {
		add("interface", "%q is not an interface name", n)
	}
	var start, end netip.Addr
	var err error
	if d.RangeStart != "" {
		if start, err = parseIPv4(d.RangeStart); err != nil {
			add("range_start", "%v", err)
		}
	}
	if d.RangeEnd != "" {
		if end, err = parseIPv4(d.RangeEnd); err != nil {
			add("range_end", "%v", err)
		}
	}
	if start.IsValid() && end.IsValid() {
		s, e := start.As4(), end.As4()
		size := (int64(e[0])<<24 | int64(e[1])<<16 | int64(e[2])<<8 | int64(e[3])) -
			(int64(s[0])<<24 | int64(s[1])<<16 | int64(s[2])<<8 | int64(s[3])) + 1
		switch {
		case size < 1:
			add("range_end", "%s is before range_start %s", end, start)
		case size > dhcpd.MaxPoolSize:
			add("range_end", "the range %s-%s holds %d addresses, more than %d", start, end, size, dhcpd.MaxPoolSize)
		}
	}
	if lt := d.LeaseTime.D(); lt < dhcpd.MinLeaseTime || lt > dhcpd.MaxLeaseTime {
		add("lease_time", "must be between %s and %s, not %s", dhcpd.MinLeaseTime, dhcpd.MaxLeaseTime, d.LeaseTime)
	}
	if pt := d.ProbeTimeout.D(); pt < 0 || pt > dhcpd.MaxProbeTimeout {
		add("probe_timeout", "must be between 0 (no probe) and %s, not %s", dhcpd.MaxProbeTimeout, d.ProbeTimeout)
	}
	if d.Router != "" {
		if _, err := parseIPv4(d.Router); err != nil {
			add("router", "%v", err)
		}
	}
	for i, s := range d.DNSServers {
		if _, err := parseIPv4(s); err != nil {
			add("dns_servers["+itoa(i)+"]", "%v", err)
		}
	}
	for i, s := range d.WINS {
		if _, err := parseIPv4(s); err != nil {
			add("wins["+itoa(i)+"]", "%v", err)
		}
	}
	if d.Domain != "" {
		if err := checkHostname(d.Domain); err != nil {
			add("domain", "%v", err)
		}
	}
	macs, ips := map[string]bool{}, map[netip.Addr]bool{}
	for i, r := range d.Reservations {
		f := "reservations[" + itoa(i) + "]"
		mac, ip, err := ParseReservation(r)
		switch {
		case err != nil:
			add(f, "%v", err)
		case macs[mac.String()]:
			add(f, "%s has two reservations", mac)
		case ips[ip]:
			add(f, "%s is reserved twice", ip)
		}
		if err == nil {
			macs[mac.String()], ips[ip] = true, true
		}
	}
	return errs
}

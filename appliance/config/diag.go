package config

import "net/netip"

// Diag holds the settings of the diagnostics page (appliance/diag).
type Diag struct {
	// PublicAddress is the address the Internet reaches the box at, which
	// the MX and reverse DNS checks compare with; empty means the address
	// of the interface with the default route (behind a router that does
	// NAT, set the router's public address).
	PublicAddress string `json:"public_address"`
}

func (d *Diag) validate(p string) Errors {
	var errs Errors
	if d.PublicAddress != "" {
		a, err := netip.ParseAddr(d.PublicAddress)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, fieldErr(p+".public_address", "%q is not an IP address (e.g. 203.0.113.5)", d.PublicAddress))
		case a.Is4In6():
			errs = append(errs, fieldErr(p+".public_address", "%s: write an IPv4 address as IPv4 (like 203.0.113.5)", a))
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			errs = append(errs, fieldErr(p+".public_address", "%s cannot be the address other mail servers reach the box at", a))
		}
	}
	return errs
}

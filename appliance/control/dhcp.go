package control

import (
	"context"

	"concierge/appliance/config"
	"concierge/dhcpd"
)

// DHCP ops.
const (
	OpDHCPStatus = "dhcp.status" // → DHCPStatus (server only)
	// OpDHCPSet changes the DHCP settings given (enabled, interface,
	// range_start, range_end, lease_time, router, dns_servers, domain,
	// reservations, wins) in one edit: all or nothing.
	OpDHCPSet = "dhcp.set"
)

// DHCPStatus is the state of the LAN's DHCP server: its leases and
// counters, and other DHCP servers it saw on the LAN.
type DHCPStatus struct {
	Enabled bool `json:"enabled"`
	// Serving is false while the server is on in the settings but not
	// serving (no address on its interface yet).
	Serving bool          `json:"serving"`
	Status  *dhcpd.Status `json:"status,omitempty"`
}

// dhcpKeys are the arguments of dhcp.set, each the config key dhcp.NAME.
var dhcpKeys = []string{"enabled", "interface", "range_start", "range_end", "lease_time", "router", "dns_servers", "domain", "reservations", "wins"}

func init() {
	fields := map[string]string{}
	for _, k := range dhcpKeys {
		fields["dhcp."+k] = k
	}
	register(map[string]opDef{
		OpDHCPStatus: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.opt.Live.DHCP(), nil
		}},
		OpDHCPSet: {args: dhcpKeys, fields: fields, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error {
				for _, k := range dhcpKeys {
					if v, given := a[k]; given {
						if err := c.Set("dhcp."+k, v); err != nil {
							return err
						}
					}
				}
				return nil
			})
		}},
	})
}

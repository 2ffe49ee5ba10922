package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"concierge/appliance/control"
)

// dhcp is "dhcp leases" and "dhcp set KEY=VALUE...".
func (c *cli) dhcp(args []string) error {
	verb, args, err := c.sub("dhcp", args, map[string]string{
		"leases": "   the DHCP server's leases, counters and other DHCP servers seen",
		"set":    "KEY=VALUE...   (enabled, interface, range_start, range_end, lease_time, router, dns_servers, domain, reservations, wins)",
	})
	if err != nil {
		return err
	}
	if verb == "set" {
		if err := nargs(args, 1, -1, "KEY=VALUE..."); err != nil {
			return err
		}
		a := control.Args{}
		for _, kv := range args {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageError{fmt.Sprintf("%q is not KEY=VALUE", kv)}
			}
			a[k] = v
		}
		return c.call(control.OpDHCPSet, a, nil)
	}
	var st control.DHCPStatus
	if err := c.call(control.OpDHCPStatus, nil, &st); err != nil {
		return err
	}
	switch {
	case !st.Enabled:
		fmt.Fprintln(c.stdout, "The DHCP server is off (dhcp.enabled = false).")
		return nil
	case st.Status == nil:
		fmt.Fprintln(c.stdout, "The DHCP server is waiting for its LAN interface to have an address.")
		return nil
	}
	d := st.Status
	fmt.Fprintf(c.stdout, "interface %s (%s), pool %s: %d of %d addresses leased\n", d.Interface, d.Addr, d.Range, d.Bound, d.PoolSize)
	for _, o := range d.OtherServers {
		fmt.Fprintf(c.stdout, "warning: another DHCP server answers on this LAN: %s (last seen %s)\n", o.Addr, o.LastSeen.Format("2006-01-02 15:04"))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nADDRESS\tMAC\tHOST\tSTATE\tEXPIRES\t")
	for _, l := range d.Leases {
		state := l.State
		if l.Reserved {
			state += " (reserved)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", l.IP, l.MAC, l.Hostname, state, l.Expires.Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

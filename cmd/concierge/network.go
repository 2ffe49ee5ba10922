package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"concierge/appliance/control"
)

// network shows and sets the box's addresses through the network ops.
func (c *cli) network(args []string) error {
	verb, args, err := c.sub("network", args, map[string]string{
		"show":    "            (the settings and each interface's live state)",
		"set":     "IF ADDRESS/PREFIX [--gateway IP] [--dns IP,IP]   (a static address, e.g. eth0 192.168.1.2/24)",
		"confirm": "            (keep the change of address that waits for confirmation)",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "show":
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		return c.networkShow()
	case "set":
		a := control.Args{}
		var rest []string
		for i := 0; i < len(args); i++ {
			flag, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
			if !strings.HasPrefix(args[i], "-") || (flag != "gateway" && flag != "dns") {
				rest = append(rest, args[i])
				continue
			}
			if !hasVal {
				if i+1 >= len(args) {
					return usageError{"--" + flag + " needs a value"}
				}
				val = args[i+1]
				i++
			}
			a[flag] = val
		}
		if err := nargs(rest, 2, 2, "IF and ADDRESS/PREFIX"); err != nil {
			return err
		}
		a["interface"], a["address"] = rest[0], rest[1]
		var ch control.NetworkChange
		if err := c.call(control.OpNetworkSet, a, &ch); err != nil {
			return err
		}
		switch {
		case !ch.Live:
			fmt.Fprintln(c.stdout, "saved; the server applies it when it starts (with network.apply on)")
		case !ch.Apply:
			fmt.Fprintln(c.stdout, "saved, not applied: network.apply is off (serve -apply-network turns it on)")
		default:
			fmt.Fprintf(c.stdout, "%s is now %s\n", a["interface"], a["address"])
		}
		if len(ch.Moved) > 0 {
			fmt.Fprintf(c.stdout, "moved to the new address: %s\n", strings.Join(ch.Moved, ", "))
		}
		return nil
	case "confirm":
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		var ch control.NetworkChange
		if err := c.call(control.OpNetworkConfirm, nil, &ch); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "confirmed: %s keeps %s\n", ch.Trial.Link, ch.Trial.New)
	}
	return nil
}

func (c *cli) networkShow() error {
	var doc control.NetworkShow
	if err := c.call(control.OpNetworkShow, nil, &doc); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	applied := "applied to the interfaces"
	if !doc.Apply {
		applied = "kept but not applied (network.apply is off)"
	}
	fmt.Fprintf(tw, "settings\t%s\n", applied)
	for _, i := range doc.Interfaces {
		fmt.Fprintf(tw, "  %s\t%s\tgateway %s\tdns %s\n", i.Name, i.Address, orNone(i.Gateway), orNone(strings.Join(i.DNS, ",")))
	}
	if doc.Trial != nil {
		fmt.Fprintf(tw, "waiting\t%s %s → %s: confirm from %s by %s or it is undone\n", doc.Trial.Link, doc.Trial.Old, doc.Trial.New,
			doc.Trial.New.Addr(), doc.Trial.Deadline.Local().Format(time.TimeOnly))
	}
	fmt.Fprintln(tw, "\nINTERFACE\tSTATE\tADDRESSES\tGATEWAY\tMAC")
	for _, l := range doc.Links {
		var addrs []string
		for _, p := range l.Addrs {
			addrs = append(addrs, p.String())
		}
		gw := ""
		if l.Gateway.IsValid() {
			gw = l.Gateway.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Name, l.Oper, strings.Join(addrs, " "), gw, l.MAC)
	}
	if doc.LinksError != "" {
		fmt.Fprintf(tw, "(the interfaces cannot be read: %s)\n", doc.LinksError)
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"concierge/appliance/control"
)

// nbtSessions prints the nbt.sessions op.
func (c *cli) nbtSessions() error {
	var doc control.NBTSessions
	if err := c.call(control.OpNBTSessions, nil, &doc); err != nil {
		return err
	}
	if !doc.Running {
		fmt.Fprintln(c.stdout, "The NetBIOS session and datagram services are not running.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SESSIONS (%d)\tREMOTE\tCALLED\tCALLING\tTARGET\tIN\tOUT\n", len(doc.Sessions))
	for _, s := range doc.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", s.ID, s.Remote, s.Called, s.Calling, s.Target, s.BytesIn, s.BytesOut)
	}
	fmt.Fprintln(tw, "\nCOUNTER\tVALUE\t\t\t\t\t")
	printCounters(tw, "session ", doc.SessionCounters, "\t\t\t\t\t")
	printCounters(tw, "datagram ", doc.DatagramCounters, "\t\t\t\t\t")
	for _, r := range doc.Reverse {
		printCounters(tw, "reverse "+r.Mapping+" ", r.Counters, "\t\t\t\t\t")
	}
	return tw.Flush()
}

// nbtSend runs nbt.send NAME MESSAGE.
func (c *cli) nbtSend(args []string) error {
	if len(args) < 2 {
		return usageError{"usage: concierge nbt send NAME MESSAGE"}
	}
	var out map[string]string
	if err := c.call(control.OpNBTSend, map[string]string{"name": args[0], "message": strings.Join(args[1:], " ")}, &out); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "sent to %s\n", args[0])
	return nil
}

// nbtMessages prints the nbt.messages op: one line per datagram, its
// data quoted.
func (c *cli) nbtMessages() error {
	var msgs []control.NBTMessage
	if err := c.call(control.OpNBTMessages, nil, &msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		fmt.Fprintln(c.stdout, "No datagram arrived for the box's messenger name.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tFROM\tSOURCE\tTO\tBYTES\tDATA")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%q\n", m.Time.Local().Format("2006-01-02 15:04:05"), m.From, m.Source, m.Dest, len(m.Data), m.Data)
	}
	return tw.Flush()
}

package main

import (
	"fmt"
	"time"

	"concierge/appliance/control"
	"concierge/appliance/link"
)

// link shows and drives the dial-out link through the link ops.
func (c *cli) link(args []string) error {
	verb, args, err := c.sub("link", args, map[string]string{
		"status": "        (mode, state, the last release of held mail, link-ups and totals per day)",
		"up":     "        (connect now)",
		"down":   "        (hang up now)",
	})
	if err != nil {
		return err
	}
	if err := nargs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	op := map[string]string{"status": control.OpLinkStatus, "up": control.OpLinkUp, "down": control.OpLinkDown}[verb]
	var st link.Status
	if err := c.call(op, nil, &st); err != nil {
		return err
	}
	switch verb {
	case "up":
		fmt.Fprintln(c.stdout, "asked the link to come up")
	case "down":
		fmt.Fprintln(c.stdout, "asked the link to go down")
	}
	c.printLink(st)
	return nil
}

func (c *cli) printLink(st link.Status) {
	w := c.stdout
	fmt.Fprintf(w, "mode %s, link %s", st.Mode, st.State)
	if !st.UpSince.IsZero() {
		fmt.Fprintf(w, " since %s", st.UpSince.Local().Format(time.DateTime))
	}
	fmt.Fprintln(w)
	if st.LastError != "" {
		fmt.Fprintf(w, "problem: %s\n", st.LastError)
	}
	for _, r := range st.Release {
		fmt.Fprintf(w, "%s %s %s: %s (%s)\n", r.When.Local().Format(time.DateTime), r.Method, r.Domain, r.Words, r.Reply)
	}
	if len(st.Days) > 0 {
		fmt.Fprintln(w, "day         link-ups  up time    out (msgs/bytes)  in (msgs/bytes)")
		for _, d := range st.Days {
			fmt.Fprintf(w, "%s  %8d  %-9s  %5d/%-10d  %5d/%d\n", d.Date, d.LinkUps, time.Duration(d.UpTime), d.MessagesOut, d.BytesOut, d.MessagesIn, d.BytesIn)
		}
	}
	for _, r := range st.Recent {
		end := "still up"
		if !r.End.IsZero() {
			end = fmt.Sprintf("up %s, down: %s", r.End.Sub(r.Start).Round(time.Second), r.DownReason)
		}
		fmt.Fprintf(w, "%s  up: %s; %s; out %d/%d B, in %d/%d B\n", r.Start.Local().Format(time.DateTime), r.Reason, end,
			r.MessagesOut, r.BytesOut, r.MessagesIn, r.BytesIn)
	}
}

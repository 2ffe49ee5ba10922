package main

import (
	"fmt"
	"strings"
	"time"

	"concierge/appliance/control"
	"concierge/appliance/timesync"
)

// time shows the clock's time keeping (op time.status).
func (c *cli) time(args []string) error {
	if err := nargs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	var st timesync.Status
	if err := c.call(control.OpTimeStatus, nil, &st); err != nil {
		return err
	}
	w := c.stdout
	fmt.Fprintf(w, "clock %s\n", time.Now().Format(time.RFC3339))
	switch {
	case st.HostKeeps:
		fmt.Fprintln(w, "time kept by this machine (the server is not the box's init); \"config set time.set_clock off\" measures against time.ntp_servers")
		return nil
	case !st.Enabled:
		fmt.Fprintln(w, "time keeping off (time.ntp_servers is empty)")
		return nil
	case st.Synchronized:
		fmt.Fprintf(w, "synchronized with %s, offset %s, stratum %d, round trip %s\n", st.Server, st.Offset, st.Stratum, st.RTT)
	default:
		fmt.Fprintln(w, "not synchronized")
	}
	fmt.Fprintf(w, "servers: %s\n", strings.Join(st.Servers, ", "))
	if st.SetClock {
		fmt.Fprintln(w, "sets the clock: yes")
	} else {
		fmt.Fprintln(w, "sets the clock: no (measures only)")
	}
	if !st.LastSync.IsZero() {
		fmt.Fprintf(w, "last sync: %s\n", st.LastSync.Local().Format(time.DateTime))
	}
	if !st.LastStep.IsZero() {
		fmt.Fprintf(w, "clock set: %s, by %s\n", st.LastStep.Local().Format(time.DateTime), st.Stepped)
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error (%s): %s\n", st.LastErrorAt.Local().Format(time.DateTime), st.LastError)
	}
	return nil
}

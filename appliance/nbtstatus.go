package appliance

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"
)

// NBTNames prints the NetBIOS names and WINS table of the server running on
// dataDir, with its counters. It asks the running service over the unix
// socket nbt.sock in the data directory (see nbtStatusSocket).
func NBTNames(dataDir string, w io.Writer) error {
	path := filepath.Join(dataDir, nbtStatusSocket)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return fmt.Errorf("nbt: concierge does not seem to be running on %s (%v)", dataDir, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var doc nbtStatusDoc
	if err := json.NewDecoder(c).Decode(&doc); err != nil {
		return fmt.Errorf("nbt: reading the status: %w", err)
	}
	if !doc.Enabled {
		fmt.Fprintln(w, "The NetBIOS name service is off (nbt.enabled = false).")
		return nil
	}
	st := doc.Status
	if st == nil {
		fmt.Fprintln(w, "The NetBIOS name service is waiting for a LAN interface with a broadcast address.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, i := range st.Interfaces {
		fmt.Fprintf(tw, "interface\t%s\t%s\tbroadcast %s\tMAC %s\n", i.Name, i.Addr, i.Broadcast, i.MAC)
	}
	fmt.Fprintln(tw, "\nNAME\tTYPE\tSTATE\t")
	for _, n := range st.Names {
		state := n.State
		if n.ConflictWith != "" {
			state += " (owned by " + n.ConflictWith + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", n.Name, n.Type, state)
	}
	if st.WINS {
		fmt.Fprintf(tw, "\nWINS TABLE (%d names)\tTYPE\tOWNER\tTTL LEFT\n", len(st.Table))
		for _, e := range st.Table {
			for i, o := range e.Owners {
				if i == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, e.Type, o, e.TTLLeft)
				} else {
					fmt.Fprintf(tw, "\t\t%s\t\n", o)
				}
			}
		}
	} else {
		fmt.Fprintln(tw, "\nWINS server: off")
	}
	keys := make([]string, 0, len(st.Counters))
	for k := range st.Counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(tw, "\nCOUNTER\tVALUE\t\t")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%d\t\t\n", k, st.Counters[k])
	}
	return tw.Flush()
}

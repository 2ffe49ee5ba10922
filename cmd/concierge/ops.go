package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"concierge/appliance/control"
)

// The commands below are each one op of the control API.

func (c *cli) nbt(args []string) error {
	verb, rest, err := c.sub("nbt", args, map[string]string{
		"names":    "             the box's NetBIOS names, the WINS table and counters",
		"sessions": "             open NetBIOS sessions and the session and datagram counters",
		"send":     "NAME MESSAGE a NetBIOS datagram to NAME (NAME#03 for a messenger name)",
		"messages": "             the last datagrams sent to the box's messenger name NAME<03>",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "sessions":
		return c.nbtSessions()
	case "send":
		return c.nbtSend(rest)
	case "messages":
		return c.nbtMessages()
	}
	var doc control.NBTNames
	if err := c.call(control.OpNBTNames, nil, &doc); err != nil {
		return err
	}
	if !doc.Enabled {
		fmt.Fprintln(c.stdout, "The NetBIOS name service is off (nbt.enabled = false).")
		return nil
	}
	st := doc.Status
	if st == nil {
		fmt.Fprintln(c.stdout, "The NetBIOS name service is waiting for a LAN interface with a broadcast address.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
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
	fmt.Fprintln(tw, "\nCOUNTER\tVALUE\t\t")
	printCounters(tw, "", st.Counters, "\t\t")
	return tw.Flush()
}

func printCounters(w io.Writer, prefix string, m map[string]uint64, end string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s%s\t%d%s\n", prefix, k, m[k], end)
	}
}

func (c *cli) smarthost(args []string) error {
	verb, args, err := c.sub("smarthost", args, map[string]string{
		"set": "HOST[:PORT] [USER] [--tls starttls|tls|none]   (a password from standard input when USER is given)",
		"off": "   deliver by MX again",
	})
	if err != nil {
		return err
	}
	if verb == "off" {
		return c.call(control.OpSmarthostSet, control.Args{"host": ""}, nil)
	}
	a := control.Args{}
	var rest []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--tls" && i+1 < len(args):
			a["tls"] = args[i+1]
			i++
		case strings.HasPrefix(args[i], "--tls="):
			a["tls"] = strings.TrimPrefix(args[i], "--tls=")
		default:
			rest = append(rest, args[i])
		}
	}
	if err := nargs(rest, 1, 2, "HOST[:PORT] [USER]"); err != nil {
		return err
	}
	a["host"] = rest[0]
	if len(rest) == 2 {
		a["user"] = rest[1]
		pw, err := c.readPassword()
		if err != nil {
			return err
		}
		a["password"] = pw
	}
	return c.call(control.OpSmarthostSet, a, nil)
}

func (c *cli) status(args []string) error {
	if err := nargs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	var st control.Status
	if err := c.call(control.OpStatus, nil, &st); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "concierge %s, up %s, settings generation %d, %d message(s) queued\n",
		st.Version, st.Uptime, st.Generation, st.QueueLength)
	if m := st.Memory; m != nil {
		fmt.Fprintf(c.stdout, "memory: resident %s (peak %s), Go heap %s of %s from the system\n", mib(m.RSS), mib(m.PeakRSS), mib(m.GoHeap), mib(m.GoSys))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, s := range st.Services {
		state := "down"
		if s.Up {
			state = "up"
		}
		fmt.Fprintf(tw, "\n%s\t%s\t\n", s.Name, state)
		for _, l := range s.Listening {
			fmt.Fprintf(tw, "  listening\t%s\t\n", l)
		}
		printCounters(tw, "  ", s.Counters, "\t")
	}
	return tw.Flush()
}

func (c *cli) log(args []string) error {
	if err := nargs(args, 0, 1, "at most one N"); err != nil {
		return err
	}
	a := control.Args{}
	if len(args) == 1 {
		if _, err := strconv.Atoi(args[0]); err != nil {
			return usageError{"N must be a number"}
		}
		a["n"] = args[0]
	}
	var lines []control.LogLine
	if err := c.call(control.OpLogRecent, a, &lines); err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(c.stdout, l.Text)
	}
	return nil
}

func (c *cli) backup(args []string) error {
	if err := nargs(args, 0, 0, "no arguments (the backup goes to standard output)"); err != nil {
		return err
	}
	var b control.Backup
	if err := c.call(control.OpBackup, nil, &b); err != nil {
		return err
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(append(out, '\n'))
	return err
}

func (c *cli) restore(args []string) error {
	if err := nargs(args, 1, 1, "one FILE (\"-\": standard input)"); err != nil {
		return err
	}
	var data []byte
	var err error
	if args[0] == "-" {
		data, err = io.ReadAll(io.LimitReader(c.stdin, control.MaxBackupSize+1))
	} else {
		data, err = os.ReadFile(args[0])
	}
	if err != nil {
		return err
	}
	var a control.Applied
	if err := c.call(control.OpRestore, control.Args{"backup": string(data)}, &a); err != nil {
		return err
	}
	if a.Live {
		fmt.Fprintf(c.stdout, "restored; the running server applied it (generation %d)\n", a.Generation)
	} else {
		fmt.Fprintln(c.stdout, "restored; the server applies it when it starts")
	}
	return nil
}

func (c *cli) admin(args []string) error {
	if _, _, err := c.sub("admin", args, map[string]string{"passwd": "   the setup page's password (from standard input)"}); err != nil {
		return err
	}
	pw, err := c.readPassword()
	if err != nil {
		return err
	}
	return c.call(control.OpAdminPasswd, control.Args{"password": pw}, nil)
}

func (c *cli) restart(args []string) error {
	if err := nargs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	return c.call(control.OpRestart, nil, nil)
}

// wait waits for an event of the running server: with --after N, for one
// newer than generation N; without, for any (the latest one, at once).
func (c *cli) wait(args []string) error {
	a := control.Args{}
	var rest []string
	for i := 0; i < len(args); i++ {
		switch {
		case (args[i] == "--after" || args[i] == "--timeout") && i+1 < len(args):
			a[strings.TrimPrefix(args[i], "--")] = args[i+1]
			i++
		default:
			rest = append(rest, args[i])
		}
	}
	if err := nargs(rest, 1, 1, "one KIND: "+control.EventSettingsApplied+" or "+control.EventNamesClaimed); err != nil {
		return err
	}
	a["kind"] = rest[0]
	var ev control.Event
	if err := c.call(control.OpEventsWait, a, &ev); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s generation %d\n", ev.Kind, ev.Generation)
	return nil
}

// mib writes a byte count in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

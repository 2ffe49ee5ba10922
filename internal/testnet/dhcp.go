package testnet

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DHCP clients for tests: Debian's udhcpc and dhclient, always run with
// the hook script below. Their stock scripts rewrite the host's
// /etc/resolv.conf even under ip netns exec; this one only records what
// the client hands it and sets the address in the client's namespace.

// dhcpHook records each event the client reports (udhcpc: $1, dhclient:
// $reason) with its environment, then sets or clears the interface's
// address, so that renewals (sent from the leased address) work.
const dhcpHook = `#!/bin/sh
ev="${1:-$reason}"
rec=$(echo "== $ev"; env | grep -E '^(ip|subnet|router|dns|domain|wins|opt[0-9]+|lease|serverid|hostname|new_[a-z_0-9]+)=' | sort)
printf '%s\n' "$rec" >> EVENTS # one write: the test reads while clients write
case "$ev" in
bound|renew|BOUND|RENEW|REBOOT|REBIND)
	ip addr flush dev "$interface"
	ip addr add "${ip:-$new_ip_address}/${subnet:-$new_subnet_mask}" dev "$interface" ;;
deconfig|RELEASE|EXPIRE|STOP)
	ip addr flush dev "$interface" ;;
esac
exit 0
`

// DHCPClient is one DHCP client's recorded events.
type DHCPClient struct {
	Host   *Host
	Dir    string // hook script, events file, dhclient's lease and pid files
	Events string // the events file
	Proc   *Proc
}

// NewDHCPClient prepares the hook script for a client on h and removes
// the host's static address, so that the address comes from DHCP.
func (h *Host) NewDHCPClient() *DHCPClient {
	h.lan.t.Helper()
	dir := h.lan.t.TempDir()
	c := &DHCPClient{Host: h, Dir: dir, Events: filepath.Join(dir, "events")}
	// The path is written into the script: dhclient runs it with a
	// scrubbed environment.
	hook := strings.Replace(dhcpHook, "EVENTS", "'"+c.Events+"'", 1)
	if err := os.WriteFile(filepath.Join(dir, "hook"), []byte(hook), 0o755); err != nil {
		h.lan.t.Fatal(err)
	}
	run(h.lan.t, "ip", "-n", h.NS, "addr", "flush", "dev", h.IF)
	return c
}

// Hook is the path of the recording hook script.
func (c *DHCPClient) Hook() string { return filepath.Join(c.Dir, "hook") }

// Start runs the client (udhcpc or dhclient, with the hook given by the
// caller's arguments) in the background.
func (c *DHCPClient) Start(name string, args ...string) *Proc {
	c.Host.lan.t.Helper()
	c.Proc = c.Host.Start(name, args...)
	return c.Proc
}

// Run runs the client to its end and returns its output.
func (c *DHCPClient) Run(name string, args ...string) (string, error) {
	return c.Host.Output(name, args...)
}

// DHCPEvent is one call of the hook: its event name and variables.
type DHCPEvent struct {
	Name string
	Vars map[string]string
}

// EventList reads the events recorded so far.
func (c *DHCPClient) EventList() []DHCPEvent {
	data, _ := os.ReadFile(c.Events)
	var evs []DHCPEvent
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "== "); ok {
			evs = append(evs, DHCPEvent{Name: name, Vars: map[string]string{}})
		} else if k, v, ok := strings.Cut(line, "="); ok && len(evs) > 0 {
			evs[len(evs)-1].Vars[k] = v
		}
	}
	return evs
}

// WaitEvent waits until the n-th event (counting from 1) named one of
// names has been recorded, and returns it.
func (c *DHCPClient) WaitEvent(d time.Duration, n int, names ...string) (DHCPEvent, bool) {
	var found DHCPEvent
	ok := WaitFor(d, func() bool {
		k := 0
		for _, e := range c.EventList() {
			for _, name := range names {
				if e.Name == name {
					k++
					if k == n {
						found = e
						return true
					}
				}
			}
		}
		return false
	})
	return found, ok
}

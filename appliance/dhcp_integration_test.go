package appliance_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// The LAN of the DHCP test: the box at .1, a pool of two addresses, one
// reservation outside the pool.
const (
	dhcpNet      = "10.77.161"
	dhcpBox      = dhcpNet + ".1"
	dhcpPoolA    = dhcpNet + ".100"
	dhcpPoolB    = dhcpNet + ".101"
	dhcpFixed    = dhcpNet + ".50"
	dhcpRogue    = dhcpNet + ".3"
	dhcpWait     = 20 * time.Second
	dhcpLogServe = `msg="dhcpd: serving"`
)

// TestDHCPWithDebianClients runs the real concierge binary as the LAN's
// DHCP server and Debian's udhcpc and dhclient as its clients (each with
// a recording hook script of the test's own, never their stock scripts,
// which rewrite the host's /etc/resolv.conf): leases with options 44 and
// 46, a reservation, renewal, RELEASE, a full pool, the leases kept
// across a restart of the box, and another DHCP server (dnsmasq) found
// when the server is turned on.
func TestDHCPWithDebianClients(t *testing.T) {
	testnet.Require(t, "udhcpc", "dhclient", "dnsmasq")
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if now, _ := os.ReadFile("/etc/resolv.conf"); string(now) != string(resolv) {
			t.Errorf("/etc/resolv.conf changed during the test:\n%s", now)
			os.WriteFile("/etc/resolv.conf", resolv, 0o644)
		}
	})

	lan := testnet.NewLAN(t, dhcpNet+".0/24")
	box := testnet.NewBox(t, lan.AddHost("box", 1))
	c1 := lan.AddHost("udhcpc1", 11).NewDHCPClient()
	c2 := lan.AddHost("dhclient", 12).NewDHCPClient()
	c3 := lan.AddHost("fixed", 13).NewDHCPClient()
	c4 := lan.AddHost("udhcpc4", 14).NewDHCPClient()
	c5 := lan.AddHost("late", 15).NewDHCPClient()
	for _, kv := range [][2]string{
		{"dhcp.enabled", "true"},
		{"dhcp.interface", "eth0"},
		{"dhcp.range_start", dhcpPoolA},
		{"dhcp.range_end", dhcpPoolB},
		{"dhcp.lease_time", "10m"},
		{"dhcp.router", dhcpNet + ".254"},
		{"dhcp.dns_servers", dhcpNet + ".53"},
		{"dhcp.domain", "office.test"},
		{"dhcp.reservations", c3.Host.MAC() + "=" + dhcpFixed},
	} {
		box.CLI("config", "set", kv[0], kv[1])
	}
	box.Start(25)
	waitLog(t, box, dhcpLogServe, 1)
	waitLog(t, box, "no other DHCP server answered", 1)

	udhcpc := func(c *testnet.DHCPClient, extra ...string) []string {
		return append([]string{"-f", "-i", "eth0", "-s", c.Hook(), "-t", "5", "-T", "2", "-A", "1",
			"-O", "wins", "-O", "46"}, extra...)
	}
	dhclientArgs := func(c *testnet.DHCPClient, extra ...string) []string {
		conf := filepath.Join(c.Dir, "dhclient.conf")
		os.WriteFile(conf, []byte("request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, "+
			"netbios-name-servers, netbios-node-type, netbios-scope;\n"), 0o644)
		return append([]string{"-d", "-v", "-sf", c.Hook(), "-cf", conf, "-lf", filepath.Join(c.Dir, "leases"),
			"-pf", filepath.Join(c.Dir, "pid")}, append(extra, "eth0")...)
	}

	// udhcpc gets a lease with the box as WINS server, H-node.
	c1.Start("udhcpc", udhcpc(c1, "-x", "hostname:udhcpc1")...)
	ev, ok := c1.WaitEvent(dhcpWait, 1, "bound")
	if !ok {
		t.Fatalf("udhcpc got no lease:\n%s", c1.Proc.Out.String())
	}
	a1 := ev.Vars["ip"]
	if ev.Vars["wins"] != dhcpBox || ev.Vars["opt46"] != "08" || ev.Vars["serverid"] != dhcpBox ||
		ev.Vars["router"] != dhcpNet+".254" || ev.Vars["domain"] != "office.test" || ev.Vars["subnet"] != "255.255.255.0" {
		t.Errorf("udhcpc's lease: %v; want wins=%s opt46=08 serverid, router, domain, subnet", ev.Vars, dhcpBox)
	}

	// dhclient gets the other address of the pool, with the same options.
	c2.Start("dhclient", dhclientArgs(c2)...)
	ev, ok = c2.WaitEvent(dhcpWait, 1, "BOUND")
	if !ok {
		t.Fatalf("dhclient got no lease:\n%s", c2.Proc.Out.String())
	}
	a2 := ev.Vars["new_ip_address"]
	if ev.Vars["new_netbios_name_servers"] != dhcpBox || ev.Vars["new_netbios_node_type"] != "8" {
		t.Errorf("dhclient's lease: %v; want new_netbios_name_servers=%s new_netbios_node_type=8", ev.Vars, dhcpBox)
	}
	if a1 == a2 || !inPool(a1) || !inPool(a2) {
		t.Fatalf("udhcpc got %q, dhclient %q: want the two pool addresses, one each", a1, a2)
	}

	// The reserved client gets its fixed address although the pool is full.
	if out, err := c3.Run("udhcpc", udhcpc(c3, "-q", "-n")...); err != nil {
		t.Fatalf("reserved client: %v\n%s", err, out)
	}
	if ev, _ := c3.WaitEvent(time.Second, 1, "bound"); ev.Vars["ip"] != dhcpFixed {
		t.Errorf("reserved client got %q, want %s", ev.Vars["ip"], dhcpFixed)
	}

	// The pool is full: a fourth client gets nothing.
	if out, err := c4.Run("udhcpc", udhcpc(c4, "-q", "-n", "-t", "2")...); err == nil {
		t.Fatalf("a client got a lease from a full pool:\n%s", out)
	}
	waitLog(t, box, "no free address to offer", 1)

	// Renewal (udhcpc renews at SIGUSR1) keeps the address.
	c1.Proc.Signal(sigUSR1)
	if ev, ok := c1.WaitEvent(dhcpWait, 1, "renew"); !ok || ev.Vars["ip"] != a1 {
		t.Fatalf("renewal: %v (ok %v), want %s again\n%s", ev.Vars, ok, a1, c1.Proc.Out.String())
	}

	// RELEASE (udhcpc releases at SIGUSR2) frees the address: the fourth
	// client now gets it.
	c1.Proc.Signal(sigUSR2)
	waitLog(t, box, `msg="dhcpd: released"`, 1)
	c1.Proc.Signal(sigTERM)
	c4.Start("udhcpc", udhcpc(c4)...)
	if ev, ok := c4.WaitEvent(dhcpWait, 1, "bound"); !ok || ev.Vars["ip"] != a1 {
		t.Fatalf("after the RELEASE the fourth client got %v (ok %v), want %s", ev.Vars, ok, a1)
	}

	// A restart of the box keeps the leases: dhclient, restarted with its
	// lease file, asks for its address again (INIT-REBOOT) and gets it;
	// udhcpc renews; a new client gets nothing, for both pool addresses
	// are still taken.
	box.Stop()
	c2.Proc.Signal(sigTERM)
	c2.Proc.Wait(5 * time.Second)
	box.Start(25)
	waitLog(t, box, dhcpLogServe, 1) // the new process's output
	c2.Start("dhclient", dhclientArgs(c2)...)
	if ev, ok := c2.WaitEvent(dhcpWait, 2, "BOUND", "REBOOT"); !ok || ev.Vars["new_ip_address"] != a2 {
		t.Fatalf("dhclient after the restart: %v (ok %v), want %s\n%s", ev.Vars, ok, a2, c2.Proc.Out.String())
	}
	c4.Proc.Signal(sigUSR1)
	if ev, ok := c4.WaitEvent(dhcpWait, 1, "renew"); !ok || ev.Vars["ip"] != a1 {
		t.Fatalf("udhcpc renewing after the restart: %v (ok %v), want %s", ev.Vars, ok, a1)
	}
	if out, err := c5.Run("udhcpc", udhcpc(c5, "-q", "-n", "-t", "2")...); err == nil {
		t.Fatalf("after the restart a new client got a lease from the full pool:\n%s", out)
	}

	// Another DHCP server on the LAN: turning the server off and on again
	// finds it and says so in the log.
	box.CLI("config", "set", "dhcp.enabled", "false")
	box.WaitSettingsApplied()
	rogue := lan.AddHost("rogue", 3)
	rogueProc := rogue.Start("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--interface=eth0", "--dhcp-range="+dhcpNet+".200,"+dhcpNet+".210,10m",
		"--dhcp-leasefile="+filepath.Join(t.TempDir(), "dnsmasq.leases"), "--log-dhcp")
	if !rogueProc.WaitOutput(dhcpWait, func(out string) bool { return strings.Contains(out, "DHCP, IP range") }) {
		t.Fatalf("dnsmasq did not start:\n%s", rogueProc.Out.String())
	}
	box.CLI("config", "set", "dhcp.enabled", "true")
	box.WaitSettingsApplied()
	waitLog(t, box, `msg="dhcpd: another DHCP server answers on this LAN`, 1)
	if !strings.Contains(box.Proc.Out.String(), "server="+dhcpRogue) {
		t.Errorf("the warning does not name %s:\n%s", dhcpRogue, box.Proc.Out.String())
	}
}

func inPool(a string) bool { return a == dhcpPoolA || a == dhcpPoolB }

// waitLog waits until the box has logged line at least n times.
func waitLog(t *testing.T, box *testnet.Box, line string, n int) {
	t.Helper()
	if !box.Proc.WaitOutput(dhcpWait, func(out string) bool { return strings.Count(out, line) >= n }) {
		t.Fatalf("the box did not log %q (%d times) within %v:\n%s", line, n, dhcpWait, box.Proc.Out.String())
	}
}

const (
	sigUSR1 = syscall.SIGUSR1
	sigUSR2 = syscall.SIGUSR2
	sigTERM = syscall.SIGTERM
)

// The LAN of the address-change test.
const dhcpMoveNet = "10.77.163"

// When the admin gives the box another address on the network page, its
// DHCP server follows: the next lease names the new address as the DHCP
// server and as the WINS server (the default), with the same pool. So it
// does when the address is changed outside the settings.
func TestDHCPFollowsTheBoxAddress(t *testing.T) {
	testnet.Require(t, "udhcpc")
	lan := testnet.NewLAN(t, dhcpMoveNet+".0/24")
	boxH := lan.AddHost("box", 1)
	box := testnet.NewBox(t, boxH)
	first, second := lan.AddHost("first", 11).NewDHCPClient(), lan.AddHost("second", 12).NewDHCPClient()
	box.CLI("config", "set", "dhcp.enabled", "true")
	box.CLI("config", "set", "dhcp.interface", boxH.IF)
	box.CLI("config", "set", "network.apply", "true")
	box.CLI("network", "set", boxH.IF, dhcpMoveNet+".1/24")
	box.Start(25)
	waitLog(t, box, dhcpLogServe, 1)

	lease := func(c *testnet.DHCPClient) map[string]string {
		t.Helper()
		if out, err := c.Run("udhcpc", "-f", "-i", "eth0", "-s", c.Hook(), "-t", "5", "-T", "2", "-A", "1", "-O", "wins", "-q", "-n"); err != nil {
			t.Fatalf("udhcpc: %v\n%s\n%s", err, out, box.Proc.Out.String())
		}
		ev, _ := c.WaitEvent(time.Second, 1, "bound")
		return ev.Vars
	}
	if v := lease(first); v["serverid"] != dhcpMoveNet+".1" || v["wins"] != dhcpMoveNet+".1" {
		t.Fatalf("first lease: %v; want server and WINS %s.1", v, dhcpMoveNet)
	}
	box.CLI("network", "set", boxH.IF, dhcpMoveNet+".2/24")
	if out, _ := box.Output("ip", "-4", "-o", "addr", "show", "dev", boxH.IF); !strings.Contains(out, dhcpMoveNet+".2/24") || strings.Contains(out, dhcpMoveNet+".1/") {
		t.Fatalf("the box's interface after network set: %s", out)
	}
	if v := lease(second); v["serverid"] != dhcpMoveNet+".2" || v["wins"] != dhcpMoveNet+".2" {
		t.Errorf("lease after the address change: %v; want server and WINS %s.2", v, dhcpMoveNet)
	}

	// An address changed outside the settings (a shell's "ip addr") is
	// followed too, on the kernel's report.
	boxH.Run("ip", "addr", "del", dhcpMoveNet+".2/24", "dev", boxH.IF)
	boxH.Run("ip", "addr", "add", dhcpMoveNet+".3/24", "brd", "+", "dev", boxH.IF)
	waitLog(t, box, "address changed; serving from the new one", 1)
	third := lan.AddHost("third", 13).NewDHCPClient()
	if v := lease(third); v["serverid"] != dhcpMoveNet+".3" || v["wins"] != dhcpMoveNet+".3" {
		t.Errorf("lease after an address change outside the settings: %v; want server and WINS %s.3", v, dhcpMoveNet)
	}
}

// A DHCP server whose LAN interface has no address yet starts as soon as
// the interface gets one (the kernel's report, not the once-a-minute
// look), and the first client is served. The box keeps its own address
// (and its mail listeners) on eth0; the DHCP LAN is a second link, lan1.
func TestDHCPStartsWhenTheInterfaceGetsAnAddress(t *testing.T) {
	testnet.Require(t, "udhcpc")
	lan := testnet.NewLAN(t, dhcpLateNet+".0/24")
	boxH, pc := lan.AddHost("box", 1), lan.AddHost("pc", 11)
	box := testnet.NewBox(t, boxH)
	client := pc.NewDHCPClient()
	boxH.Run("ip", "link", "add", "lan1", "type", "veth", "peer", "name", "eth1", "netns", pc.NS)
	boxH.Run("ip", "link", "set", "lan1", "up")
	pc.Run("ip", "link", "set", "eth1", "up")
	box.CLI("config", "set", "dhcp.enabled", "true")
	box.CLI("config", "set", "dhcp.interface", "lan1")
	box.Start(25)
	waitLog(t, box, "LAN interface not ready", 1)
	boxH.Run("ip", "addr", "add", dhcpLate2Net+".1/24", "brd", "+", "dev", "lan1")
	waitLog(t, box, dhcpLogServe, 1)
	if out, err := client.Run("udhcpc", "-f", "-i", "eth1", "-s", client.Hook(), "-t", "5", "-T", "2", "-A", "1", "-q", "-n"); err != nil {
		t.Fatalf("udhcpc: %v\n%s\n%s", err, out, box.Proc.Out.String())
	}
	if ev, ok := client.WaitEvent(time.Second, 1, "bound"); !ok || ev.Vars["serverid"] != dhcpLate2Net+".1" {
		t.Fatalf("lease %v (%v); want one from %s.1", ev.Vars, ok, dhcpLate2Net)
	}
}

// The LANs of the late-address test: the box's own, and the one its
// DHCP server serves.
const (
	dhcpLateNet  = "10.77.164"
	dhcpLate2Net = "10.77.165"
)

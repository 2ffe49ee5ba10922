package e2e

// Acceptance test of issue 11 item 3: the box's static LAN address set in
// the Network page, in a real browser.

import (
	"bufio"
	"net/url"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// How long a NetBIOS name query may take to answer from a new address
// (the name service restarts there and claims its names again).
const nbtMoveTimeout = 20 * time.Second

// ipAddrs returns the IPv4 addresses of the box's LAN interface as
// "ip addr" shows them ("10.77.61.5/24 ...").
func ipAddrs(t *testing.T, h *testnet.Host) string {
	t.Helper()
	out := h.Run("ip", "-4", "-o", "addr", "show", "dev", h.IF)
	var addrs []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		for i := range f {
			if f[i] == "inet" && i+1 < len(f) {
				addrs = append(addrs, f[i+1])
			}
		}
	}
	return strings.Join(addrs, " ")
}

// listens says whether something in h's namespace listens on addr:port.
func listens(h *testnet.Host, addrPort string) bool {
	out, _ := h.Output("ss", "-Htln", "src", addrPort)
	return strings.TrimSpace(out) != ""
}

// greets dials addr from h and returns the server's first line.
func greets(t *testing.T, h *testnet.Host, addr string) string {
	t.Helper()
	c := h.DialTCP(addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Errorf("%s: %v", addr, err)
	}
	return line
}

// Acceptance 3: in the Network page the admin gives the box a new static
// LAN address. The change takes away the address the browser uses, so
// it runs on trial: the page sends the browser to the new address, where
// the admin logs in and confirms it. Then the interface has the new
// address (ip addr), NetBIOS answers from it (nmblookup), SMTP and POP3
// listen on it. A second change that nobody confirms is undone by itself
// after network.rollback_after (shortened for the test).
func TestNetworkPageStaticAddress(t *testing.T) {
	requireBrowser(t, "nmblookup", "ss")
	lan := testnet.NewLAN(t, "10.77.61.0/24")
	boxH, pc := lan.AddHost("box", 1), lan.AddHost("pc", 2)
	const (
		oldA, newA, lostA = "10.77.61.1", "10.77.61.5", "10.77.61.7"
		prefix            = "/24"
	)
	box := webBox(t, boxH, "pop3.listen", oldA+":110", "nbt.enabled", "true", "network.apply", "true")
	box.Start(80)
	b := StartBrowser(t, pc, "http://"+oldA, artifacts(t))
	wizard(t, b)

	p := b.Goto("/network")
	if row := rowWith(b.Table("links"), boxH.IF, oldA+prefix); row == nil {
		t.Fatalf("the network page does not show %s with %s:\n%s", boxH.IF, oldA, texts(b.Table("links")))
	}
	if v := b.Values("network"); v["interface"] != boxH.IF || v["address"] != oldA+prefix {
		t.Errorf("the form shows %v, want the interface the browser uses", v)
	}
	b.Screenshot("network")

	// A refused address comes back next to its field.
	p = b.Submit("network", "", map[string]string{"interface": boxH.IF, "address": "10.77.61.255/24"})
	if p.Status != 422 || !strings.Contains(p.Errors["address"], "broadcast") {
		t.Errorf("a broadcast address: status %d, errors %v", p.Status, p.Errors)
	}

	// The change: the browser lands on the new address.
	p = b.Submit("network", "", map[string]string{"interface": boxH.IF, "address": newA + prefix})
	if u, err := url.Parse(p.URL); err != nil || u.Hostname() != newA || p.Path != "/login" {
		b.Screenshot("failed-network")
		t.Fatalf("after the change the browser is at %s (status %d, errors %v), want the login page on %s", p.URL, p.Status, p.Errors, newA)
	}
	if got := ipAddrs(t, boxH); got != newA+prefix+" "+oldA+prefix {
		t.Errorf("during the trial ip addr shows %q, want the new address first and the old one kept", got)
	}
	// The browser's base is the old address: from now on the paths are
	// on the new one.
	at := "http://" + newA
	b.SubmitOK("login", "", map[string]string{"password": adminPass})
	b.Goto(at + "/network")
	b.Screenshot("network-trial")
	p = b.SubmitOK("network-confirm", "", nil)
	if !strings.Contains(p.Notice, "Confirmed") {
		t.Errorf("confirming shows %q", p.Notice)
	}
	if got := ipAddrs(t, boxH); got != newA+prefix {
		t.Errorf("after the confirmation ip addr shows %q, want %s only", got, newA+prefix)
	}
	cliHas(t, box, "network set in the page", []string{"network", "show"}, newA+prefix)

	// NetBIOS answers from the new address, to a unicast query there and
	// to a broadcast.
	var out string
	if !testnet.WaitFor(nbtMoveTimeout, func() bool {
		out, _ = pc.Nmblookup("-U", newA, nbtName+"#00")
		return strings.Contains(out, newA+" "+nbtName+"<00>")
	}) {
		t.Errorf("nmblookup -U %s %s#00 does not answer with the new address:\n%s\n%s", newA, nbtName, out, box.Proc.Out.String())
	}
	if out, _ = pc.Nmblookup("-B", lan.Broadcast().String(), nbtName+"#00"); !strings.Contains(out, newA+" "+nbtName+"<00>") {
		t.Errorf("a broadcast query for %s finds:\n%s", nbtName, out)
	}
	// SMTP and POP3 moved from the old address to the new one.
	for _, port := range []string{"25", "587", "465", "110", "80"} {
		if !listens(boxH, newA+":"+port) || listens(boxH, oldA+":"+port) {
			t.Errorf("port %s does not listen on %s only:\n%s", port, newA, boxH.Run("ss", "-tln"))
		}
	}
	if l := greets(t, pc, newA+":25"); !strings.HasPrefix(l, "220 ") {
		t.Errorf("SMTP on the new address greets %q", l)
	}
	if l := greets(t, pc, newA+":110"); !strings.HasPrefix(l, "+OK") {
		t.Errorf("POP3 on the new address greets %q", l)
	}

	// A change nobody confirms is undone by itself.
	box.CLI("config", "set", "network.rollback_after", "2s")
	b.Goto(at + "/network")
	p = b.Submit("network", "", map[string]string{"interface": boxH.IF, "address": lostA + prefix})
	if u, err := url.Parse(p.URL); err != nil || u.Hostname() != lostA {
		t.Fatalf("after the second change the browser is at %s, want %s", p.URL, lostA)
	}
	if !box.Proc.WaitOutput(testnet.ReloadTimeout, func(out string) bool { return strings.Contains(out, `msg="network change undone"`) }) {
		t.Fatalf("the unconfirmed change was not undone:\n%s", box.Proc.Out.String())
	}
	if got := ipAddrs(t, boxH); got != newA+prefix {
		t.Errorf("after the rollback ip addr shows %q, want %s only", got, newA+prefix)
	}
	if !listens(boxH, newA+":25") || listens(boxH, lostA+":25") {
		t.Errorf("after the rollback SMTP does not listen on %s:\n%s", newA, boxH.Run("ss", "-tln"))
	}
	if !testnet.WaitFor(nbtMoveTimeout, func() bool {
		out, _ = pc.Nmblookup("-U", newA, nbtName+"#00")
		return strings.Contains(out, newA+" "+nbtName+"<00>")
	}) {
		t.Errorf("after the rollback NetBIOS does not answer on %s:\n%s", newA, out)
	}
	if p := b.Goto(at + "/network"); p.Path != "/network" || p.Status != 200 {
		t.Errorf("the page on the address that stayed: %s (status %d)", p.URL, p.Status)
	}
	b.PublishScreenshots("network")
}

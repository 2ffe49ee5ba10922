package testnet

import (
	"os/exec"
	"testing"
)

// This file wires the dial-out network of the link tests and benchmarks:
// a point-to-point veth pair, "wan", between the box's host and the
// ISP's, that the box's up and down commands raise and lower, and the
// ISP's Postfix as the office's spooler (backup MX flushing on ETRN).

// WAN joins the box's host and the ISP's host by a veth pair named "wan"
// with the given addresses (/24): up on the ISP's side, down on the
// box's until its up command (WANUpCommand) raises it.
func WAN(t testing.TB, box, isp *Host, boxAddr, ispAddr string) {
	t.Helper()
	for _, args := range [][]string{
		{"ip", "link", "add", "wan", "netns", box.NS, "type", "veth", "peer", "name", "wan", "netns", isp.NS},
		{"ip", "-n", box.NS, "addr", "add", boxAddr + "/24", "dev", "wan"},
		{"ip", "-n", isp.NS, "addr", "add", ispAddr + "/24", "dev", "wan"},
		{"ip", "-n", isp.NS, "link", "set", "wan", "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
}

// WANUpCommand is the box's link up command for a WAN: raise wan and
// route the ISP's network (a /24 prefix such as "10.77.14.0/24") over it
// to the ISP's wan address. WANDownCommand takes it down.
func WANUpCommand(ispPrefix, ispAddr string) string {
	return "ip link set wan up && ip route replace " + ispPrefix + " via " + ispAddr + " dev wan"
}

// WANDownCommand is the box's link down command for a WAN.
const WANDownCommand = "ip link set wan down"

// SpoolerSettings are the main.cf lines (for StartPostfix) of an ISP's
// Postfix that is backup MX for domain: it accepts the domain's mail and
// relays it to the box at boxAddr, holds it while the box is unreachable,
// and sends it on ETRN (fast flush) from the networks (also allowed to
// relay through it: the box's smarthost), given as a Postfix list such
// as "127.0.0.0/8, 10.77.15.0/24".
func SpoolerSettings(domain, boxAddr, networks string) []string {
	return []string{
		"mynetworks = " + networks,
		"relay_domains = " + domain,
		"transport_maps = inline:{" + domain + "=relay:[" + boxAddr + "]:25}",
		"fast_flush_domains = $relay_domains",
		"smtpd_etrn_restrictions = permit_mynetworks, reject",
		"smtp_connect_timeout = 2s",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
	}
}

package appliance_test

import (
	"regexp"
	"strings"
	"testing"

	"concierge/internal/testnet"
)

// TestDHCPClientFindsPCsThroughWINS is a Windows PC's first morning on
// the office LAN: it takes a lease from the box, reads the NetBIOS name
// server from option 44 (and H-node from option 46), and asks that server
// for another PC's name, which Samba's nmbd registered with the box as
// its WINS server.
func TestDHCPClientFindsPCsThroughWINS(t *testing.T) {
	testnet.Require(t, "udhcpc", "nmbd", "nmblookup")
	const net3 = "10.77.162"
	lan := testnet.NewLAN(t, net3+".0/24")
	boxH := lan.AddHost("box", 1)
	box := testnet.NewBox(t, boxH)
	pc := lan.AddHost("pc", 11).NewDHCPClient()
	officepc := lan.AddHost("officepc", 12)
	for _, kv := range [][2]string{
		{"nbt.enabled", "true"}, {"nbt.interfaces", boxH.IF},
		{"dhcp.enabled", "true"}, {"dhcp.interface", boxH.IF},
		{"dhcp.range_start", net3 + ".100"}, {"dhcp.range_end", net3 + ".110"},
	} {
		box.CLI("config", "set", kv[0], kv[1])
	}
	box.Start(25)
	box.WaitNamesClaimed(1)

	// The other PC registers its names with the box (its WINS server).
	officepc.StartNmbd("OFFICEPC", "OFFICE", "wins server = "+boxH.Addr.String())
	if !testnet.WaitFor(dhcpWait, func() bool {
		return regexp.MustCompile(`OFFICEPC<00>\s+unique\s+` + regexp.QuoteMeta(officepc.Addr.String())).MatchString(box.CLI("nbt", "names"))
	}) {
		t.Fatalf("nmbd's name never reached the WINS table:\n%s", box.CLI("nbt", "names"))
	}

	// The new PC: a lease, and the name server it names.
	pc.Start("udhcpc", "-f", "-i", "eth0", "-s", pc.Hook(), "-t", "5", "-T", "2", "-O", "wins", "-O", "46")
	ev, ok := pc.WaitEvent(dhcpWait, 1, "bound")
	if !ok {
		t.Fatalf("no lease:\n%s", pc.Proc.Out.String())
	}
	wins := ev.Vars["wins"]
	if wins != boxH.Addr.String() || ev.Vars["opt46"] != "08" {
		t.Fatalf("lease names WINS %q, node type %q; want %s and 08 (H-node)", wins, ev.Vars["opt46"], boxH.Addr)
	}
	// The lease shows in the box's lease list (the status page's source).
	if leases := box.CLI("dhcp", "leases"); !regexp.MustCompile(regexp.QuoteMeta(ev.Vars["ip"]) + `\s+\S+\s+.*bound`).MatchString(leases) {
		t.Errorf("dhcp leases lacks %s:\n%s", ev.Vars["ip"], leases)
	}
	out, err := pc.Host.Nmblookup("-U", wins, "--recursion", "OFFICEPC#00")
	if err != nil || !strings.Contains(out, officepc.Addr.String()+" OFFICEPC<00>") {
		t.Fatalf("OFFICEPC not found through the WINS server of the lease (%s): %v\n%s", wins, err, out)
	}
}

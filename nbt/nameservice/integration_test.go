package nameservice_test

// Acceptance tests of issue 5 against real peers in network namespaces:
// the real "concierge serve" on one host of a bridged LAN, Samba's
// nmblookup, nmbd and nbtscan, impacket and raw packets on the others, and
// tshark on the box's interface checking that every packet the box sends
// decodes cleanly in Wireshark's NBNS dissector.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

// nbtBox prepares a concierge with only the NetBIOS service on, on the
// host's LAN interface; settings are extra "key value" pairs.
func nbtBox(t *testing.T, h *testnet.Host, settings ...string) *testnet.Box {
	t.Helper()
	b := testnet.NewBox(t, h)
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"nbt.enabled", "true"}, {"nbt.interfaces", h.IF},
	} {
		b.CLI("config", "set", kv[0], kv[1])
	}
	for i := 0; i+1 < len(settings); i += 2 {
		b.CLI("config", "set", settings[i], settings[i+1])
	}
	return b
}

// capture starts tshark on the box and, when the test ends, fails it if
// any packet the box sent is malformed or raises an expert warning or
// error in the NBNS dissector.
func capture(t *testing.T, box *testnet.Host) {
	t.Helper()
	c := box.Capture("udp port 137 or tcp port 137")
	t.Cleanup(func() {
		bad, all := c.Stop(testnet.Flagged(box.Addr))
		sent := 0
		for _, l := range strings.Split(all, "\n") {
			if strings.Contains(l, box.Addr.String()+" →") || strings.Contains(l, box.Addr.String()+" ->") {
				sent++
			}
		}
		t.Logf("tshark: %d packets captured, %d sent by the box", strings.Count(all, "\n"), sent)
		if t.Failed() {
			t.Logf("capture:\n%s", all)
		}
		if strings.TrimSpace(bad) != "" {
			t.Errorf("Wireshark flags packets the box sent:\n%s", bad)
		}
		if sent == 0 {
			t.Errorf("the capture holds no packet from the box:\n%s", all)
		}
	})
}

func startBox(t *testing.T, b *testnet.Box) {
	t.Helper()
	b.Start(137)
}

// query sends one packet from c to dst and returns the first answer from
// dst with the same transaction ID, or nil after d.
func exchange(t *testing.T, c *net.UDPConn, dst netip.AddrPort, p *wire.Packet, d time.Duration) *wire.Packet {
	t.Helper()
	b, err := p.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort(b, dst); err != nil {
		t.Fatal(err)
	}
	return await(t, c, p.ID, d)
}

func await(t *testing.T, c *net.UDPConn, id uint16, d time.Duration) *wire.Packet {
	t.Helper()
	deadline := time.Now().Add(d)
	buf := make([]byte, 2000)
	for {
		c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		r, err := wire.Parse(buf[:n])
		if err != nil {
			t.Fatalf("malformed answer: %v", err)
		}
		if r.ID == id {
			return r
		}
	}
}

func nbAddrs(t *testing.T, p *wire.Packet) []string {
	t.Helper()
	es, err := wire.ParseNB(p.Answers[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Addr.String())
	}
	return out
}

// Item 1: the box is found by broadcast and by unicast (recursive) query
// within a second of start, an unknown name is not, and node status lists
// every name with its flags and the MAC address.
func TestNBTLookupAndNodeStatus(t *testing.T) {
	testnet.Require(t, "nmblookup", "nbtscan", "tshark")
	lan := testnet.NewLAN(t, "10.77.5.0/24")
	boxH, client := lan.AddHost("box", 1), lan.AddHost("pc", 2)
	box := nbtBox(t, boxH)
	capture(t, boxH)

	// Ask by broadcast every 20 ms from the moment the process starts.
	c := client.ListenUDP(0)
	bcast := netip.AddrPortFrom(lan.Broadcast(), 137)
	name := wire.MustName("CONCIERGE", 0x20, "")
	start := time.Now()
	box.Start(0)
	var first time.Duration
	for i := 0; first == 0; i++ {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no answer to a broadcast query 5s after start:\n%s", box.Proc.Out.String())
		}
		r := exchange(t, c, bcast, wire.NewQuery(uint16(100+i), name, true, false), 20*time.Millisecond)
		if r != nil && r.Kind() == wire.KindPositiveQuery {
			first = time.Since(start)
		}
	}
	// "Within 1 s of start": from the moment the service opened its
	// socket (its log line) to the first answer.
	m := regexp.MustCompile(`time=(\S+) level=INFO msg="nbt: listening"`).FindStringSubmatch(box.Proc.Out.String())
	if m == nil {
		t.Fatalf("no listening line in the log:\n%s", box.Proc.Out.String())
	}
	listening, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatal(err)
	}
	answered := start.Add(first)
	t.Logf("first broadcast answer %v after the process started, %v after the service started",
		first, answered.Sub(listening).Round(time.Millisecond))
	if d := answered.Sub(listening); d > time.Second {
		t.Errorf("first answer %v after the service started; want within 1s", d)
	}

	out, err := client.Nmblookup("-B", lan.Broadcast().String(), "CONCIERGE#20")
	if err != nil || !strings.Contains(out, boxH.Addr.String()+" CONCIERGE<20>") {
		t.Errorf("nmblookup -B: %v\n%s", err, out)
	}
	out, err = client.Nmblookup("-U", boxH.Addr.String(), "--recursion", "CONCIERGE#00")
	if err != nil || !strings.Contains(out, boxH.Addr.String()+" CONCIERGE<00>") {
		t.Errorf("nmblookup -U --recursion: %v\n%s", err, out)
	}
	out, err = client.Nmblookup("-U", boxH.Addr.String(), "--recursion", "NOSUCHPC#00")
	if err == nil || !strings.Contains(out, "failed to find name NOSUCHPC") {
		t.Errorf("unknown name by unicast: %v\n%s", err, out)
	}
	out, err = client.Nmblookup("-B", lan.Broadcast().String(), "NOSUCHPC#20")
	if err == nil {
		t.Errorf("unknown name by broadcast found:\n%s", out)
	}

	mac := strings.ToUpper(strings.ReplaceAll(boxH.MAC(), ":", "-"))
	out, err = client.Nmblookup("-A", boxH.Addr.String())
	if err != nil {
		t.Fatalf("nmblookup -A: %v\n%s", err, out)
	}
	for _, re := range []string{
		`CONCIERGE\s+<00> -\s+B <ACTIVE>`, `CONCIERGE\s+<03> -\s+B <ACTIVE>`, `CONCIERGE\s+<20> -\s+B <ACTIVE>`,
		`WORKGROUP\s+<00> - <GROUP> B <ACTIVE>`, `WORKGROUP\s+<1e> - <GROUP> B <ACTIVE>`, `MAC Address = ` + mac,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("nmblookup -A lacks %q:\n%s", re, out)
		}
	}
	out, err = client.Output("nbtscan", "-v", "-s", ":", boxH.Addr.String())
	t.Logf("nbtscan:\n%s", out)
	if err != nil {
		t.Fatalf("nbtscan: %v\n%s", err, out)
	}
	a := boxH.Addr.String()
	for _, want := range []string{a + ":CONCIERGE      :00U", a + ":CONCIERGE      :03U", a + ":CONCIERGE      :20U",
		a + ":WORKGROUP      :00G", a + ":WORKGROUP      :1eG", a + ":MAC:" + strings.ToLower(boxH.MAC())} {
		if !strings.Contains(out, want) {
			t.Errorf("nbtscan lacks %q:\n%s", want, out)
		}
	}

	// 137/tcp answers the same, framed with a length.
	conn := client.DialTCP(netip.AddrPortFrom(boxH.Addr, 137).String())
	q, _ := wire.NewQuery(77, wire.MustName("CONCIERGE", 0x00, ""), false, true).Pack()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(q))))
	conn.Write(q)
	var hdr [2]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		t.Fatalf("137/tcp: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		t.Fatalf("137/tcp: %v", err)
	}
	if r, err := wire.Parse(body); err != nil || r.Kind() != wire.KindPositiveQuery || nbAddrs(t, r)[0] != a {
		t.Errorf("137/tcp answer: %v %v", r, err)
	}

	// impacket, with the system python.
	py := fmt.Sprintf(`from impacket import nmb
n = nmb.NetBIOS()
n.set_nameserver(%q)
print("ADDR", n.gethostbyname("CONCIERGE", nmb.TYPE_SERVER).entries)
for e in n.getnodestatus("*", %q):
    print("NAME", e["NAME"].decode().strip(), e["TYPE"], e["NAME_FLAGS"])
`, a, a)
	out, err = client.Output("/usr/bin/python3", "-c", py)
	if err != nil || !strings.Contains(out, "ADDR ['"+a+"']") || strings.Count(out, "NAME ") != 5 {
		t.Errorf("impacket: %v\n%s", err, out)
	}

	// The names are listed by the CLI, and released on shutdown.
	if out := box.CLI("nbt", "names"); !strings.Contains(out, "CONCIERGE<20>") || !strings.Contains(out, "active") {
		t.Errorf("concierge nbt names:\n%s", out)
	}
	l := client.ListenBroadcastUDP(137)
	box.Stop()
	released := 0
	buf := make([]byte, 1500)
	l.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, _, err := l.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		if p, err := wire.Parse(buf[:n]); err == nil && p.Kind() == wire.KindReleaseRequest {
			released++
		}
	}
	if released != 5 {
		t.Errorf("%d names released at shutdown, want 5", released)
	}
}

// Item 2: nmbd registers with our WINS server, another client resolves
// its names through the box, and they expire after the TTL once nmbd
// is gone.
func TestNBTWINSWithNmbd(t *testing.T) {
	testnet.Require(t, "nmblookup", "nmbd", "tshark")
	lan := testnet.NewLAN(t, "10.77.6.0/24")
	boxH, pc1, pc2 := lan.AddHost("box", 1), lan.AddHost("pc1", 2), lan.AddHost("pc2", 3)
	box := nbtBox(t, boxH, "nbt.wins_min_ttl", "1s", "nbt.wins_max_ttl", "4s")
	capture(t, boxH)
	startBox(t, box)
	nmbd := pc1.StartNmbd("OFFICEPC", "OFFICE", "wins server = "+boxH.Addr.String())
	waitRegistered(t, box, "OFFICEPC<00>", "OFFICE<00>")
	out, err := pc2.Nmblookup("-U", boxH.Addr.String(), "--recursion", "OFFICEPC#00")
	if err != nil || !strings.Contains(out, pc1.Addr.String()+" OFFICEPC<00>") {
		t.Fatalf("nmbd's name not resolvable through the box: %v\n%s\n%s", err, out, box.CLI("nbt", "names"))
	}
	// Its workgroup is a group name answered with the member's address.
	out, err = pc2.Nmblookup("-U", boxH.Addr.String(), "--recursion", "OFFICE#00")
	if err != nil || !strings.Contains(out, pc1.Addr.String()+" OFFICE<00>") {
		t.Errorf("group name: %v\n%s", err, out)
	}
	box.WaitNamesClaimed(1)
	names := box.CLI("nbt", "names")
	t.Logf("concierge nbt names:\n%s", names)
	if !regexp.MustCompile(`OFFICEPC<20>\s+unique\s+`+regexp.QuoteMeta(pc1.Addr.String())).MatchString(names) ||
		!regexp.MustCompile(`OFFICE<00>\s+group\s+`+regexp.QuoteMeta(pc1.Addr.String())).MatchString(names) {
		t.Errorf("WINS table lacks nmbd's names")
	}
	checkNamesOutput(t, parseNames(t, names), "CONCIERGE", pc1.Addr.String())

	// A new name for the box applies live: the old names are released
	// and no longer answered, the new ones claimed, and the workgroup's
	// group names (the same before and after) are not claimed again.
	box.CLI("config", "set", "nbt.name", "NEWBOX")
	box.WaitNamesClaimed(2)
	if out, err := pc2.Nmblookup("-B", lan.Broadcast().String(), "NEWBOX#20"); err != nil || !strings.Contains(out, boxH.Addr.String()+" NEWBOX<20>") {
		t.Errorf("the new name is not answered: %v\n%s", err, out)
	}
	if out, err := pc2.Nmblookup("-U", boxH.Addr.String(), "--recursion", "CONCIERGE#20"); err == nil {
		t.Errorf("the old name is still answered:\n%s", out)
	}
	log := box.Proc.Out.String()
	for _, want := range []struct {
		line string
		n    int
	}{
		{`msg="nbt: name claimed" .*name=WORKGROUP<1e> `, 1},
		{`msg="nbt: name claimed" .*name=WORKGROUP<00> `, 1},
		{`msg="nbt: name claimed" .*name=CONCIERGE<20> `, 1},
		{`msg="nbt: name claimed" .*name=NEWBOX<20> `, 1},
		{`msg="nbt: name released" .*name=CONCIERGE<20>\n`, 1},
		{`msg="nbt: name released" .*name=WORKGROUP`, 0},
	} {
		if got := len(regexp.MustCompile(want.line).FindAllString(log, -1)); got != want.n {
			t.Errorf("%q logged %d times, want %d", want.line, got, want.n)
		}
	}
	names = box.CLI("nbt", "names")
	checkNamesOutput(t, parseNames(t, names), "NEWBOX", "")
	if strings.Contains(names, "CONCIERGE<") {
		t.Errorf("nbt names still lists the old name:\n%s", names)
	}

	// nmbd dies without releasing; its names go when the TTL (4s at
	// most) passes.
	nmbd.Signal(syscall.SIGKILL)
	nmbd.Wait(5 * time.Second)
	killed := time.Now()
	if !testnet.WaitFor(10*time.Second, func() bool { return !strings.Contains(box.CLI("nbt", "names"), "OFFICEPC") }) {
		t.Fatalf("WINS table still lists OFFICEPC 10s after nmbd died:\n%s", box.CLI("nbt", "names"))
	}
	t.Logf("nmbd's names expired %v after it died", time.Since(killed).Round(100*time.Millisecond))
	out, err = pc2.Nmblookup("-U", boxH.Addr.String(), "--recursion", "OFFICEPC#00")
	if err == nil {
		t.Errorf("name still there after the TTL:\n%s", out)
	}
}

// parseNames reads "concierge nbt names" and fails the test on a line
// that fits none of its sections.
func parseNames(t *testing.T, out string) testnet.NBTNames {
	t.Helper()
	n := testnet.ParseNBTNames(out)
	if len(n.Unplaced) > 0 {
		t.Fatalf("nbt names: lines %q fit no section:\n%s", n.Unplaced, out)
	}
	return n
}

// checkNamesOutput checks the box's own names (NAME<00>, <03>, <20>
// unique, WORKGROUP<00> and <1e> group, all active), the interface line,
// nmbd's OFFICEPC<20> in the WINS table with its owner and TTL, and the
// counters of what the box received and sent; with pc empty only the
// own names and the interface.
func checkNamesOutput(t *testing.T, n testnet.NBTNames, name, pc string) {
	t.Helper()
	want := map[string][2]string{
		name + "<00>": {"unique", "active"}, name + "<03>": {"unique", "active"}, name + "<20>": {"unique", "active"},
		"WORKGROUP<00>": {"group", "active"}, "WORKGROUP<1e>": {"group", "active"},
	}
	if !reflect.DeepEqual(n.Own, want) {
		t.Errorf("own names: %v, want %v", n.Own, want)
	}
	if len(n.Interfaces) != 1 || !regexp.MustCompile(`^\S+ 10\.77\.6\.1 broadcast 10\.77\.6\.255 MAC [0-9a-f:]{17}$`).MatchString(n.Interfaces[0]) {
		t.Errorf("interfaces: %q", n.Interfaces)
	}
	if pc == "" {
		return
	}
	if w := n.WINS["OFFICEPC<20>"]; len(w) != 3 || w[0] != "unique" || w[1] != pc || !regexp.MustCompile(`^\d+s$`).MatchString(w[2]) {
		t.Errorf("WINS table row of OFFICEPC<20>: %q", w)
	}
	if n.Counters["rx registration-request"] == 0 || n.Counters["tx positive-registration"] == 0 {
		t.Errorf("counters: %v", n.Counters)
	}
}

// waitRegistered waits for the box's (debug) log of a WINS registration
// of each name.
func waitRegistered(t *testing.T, box *testnet.Box, names ...string) {
	t.Helper()
	for _, n := range names {
		re := regexp.MustCompile(`msg="nbt: WINS registration" .*name=` + regexp.QuoteMeta(n) + ` `)
		if !testnet.WaitFor(30*time.Second, func() bool { return re.MatchString(box.Proc.Out.String()) }) {
			t.Fatalf("%s not registered with the box within 30s:\n%s", n, box.CLI("nbt", "names"))
		}
	}
}

// Item 3: a broadcast registration of the box's unique name gets one
// negative response; a WINS registration of a name a live nmbd owns gets
// a WACK, nmbd is challenged and the registration refused; once nmbd is
// dead the same registration succeeds.
func TestNBTDefenceAndChallenge(t *testing.T) {
	testnet.Require(t, "nmbd", "tshark")
	lan := testnet.NewLAN(t, "10.77.7.0/24")
	boxH, owner, rival := lan.AddHost("box", 1), lan.AddHost("owner", 2), lan.AddHost("rival", 3)
	box := nbtBox(t, boxH, "nbt.challenge_timeout", "500ms")
	capture(t, boxH)
	startBox(t, box)
	box.WaitNamesClaimed(1)

	c := rival.ListenUDP(137)
	bcast := netip.AddrPortFrom(lan.Broadcast(), 137)
	reg := wire.NewRegistration(0x4242, wire.MustName("CONCIERGE", 0x20, ""), 300, wire.NB{Addr: rival.Addr}, true)
	r := exchange(t, c, bcast, reg, 2*time.Second)
	if r == nil || r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeActErr {
		t.Fatalf("broadcast registration of the box's name: %v", r)
	}
	if again := await(t, c, 0x4242, 700*time.Millisecond); again != nil {
		t.Errorf("negative response sent twice: %v", again)
	}

	// The same with impacket's registration request, by broadcast.
	py := fmt.Sprintf(`from impacket import nmb
n = nmb.NetBIOS()
n.set_broadcastaddr(%q)
try:
    n.name_registration_request("CONCIERGE", None, nmb.TYPE_WORKSTATION, None, 0, %q)
    print("ACCEPTED")
except nmb.NetBIOSError as e:
    print("REFUSED", e.error_code)
`, lan.Broadcast().String(), rival.Addr.String())
	if out, err := rival.Output("/usr/bin/python3", "-c", py); err != nil || !strings.Contains(out, "REFUSED 6") {
		t.Errorf("impacket registration of CONCIERGE<00>: %v\n%s", err, out)
	}

	nmbd := owner.StartNmbd("OWNERPC", "OFFICE", "wins server = "+boxH.Addr.String())
	srv := netip.AddrPortFrom(boxH.Addr, 137)
	name := wire.MustName("OWNERPC", 0x20, "")
	waitRegistered(t, box, "OWNERPC<20>")
	try := func(id uint16) *wire.Packet {
		r := exchange(t, c, srv, wire.NewRegistration(id, name, 300, wire.NB{Addr: rival.Addr}, false), 2*time.Second)
		if r == nil || r.Kind() != wire.KindWACK {
			t.Fatalf("want a WACK, got %v", r)
		}
		if h, err := wire.ParseWACK(r.Answers[0].Data); err != nil || h.Opcode != wire.OpRegistration {
			t.Errorf("WACK data: %+v %v", h, err)
		}
		return await(t, c, id, time.Duration(r.Answers[0].TTL+1)*time.Second)
	}
	if r := try(0x5001); r == nil || r.Kind() != wire.KindNegativeRegistration || r.Rcode != wire.RcodeActErr {
		t.Fatalf("registration of a live owner's name: %v", r)
	}
	nmbd.Signal(syscall.SIGKILL)
	nmbd.Wait(5 * time.Second)
	if r := try(0x5002); r == nil || r.Kind() != wire.KindPositiveRegistration {
		t.Fatalf("registration of a dead owner's name: %v", r)
	}
	r = exchange(t, c, srv, wire.NewQuery(7, name, false, true), time.Second)
	if r == nil || nbAddrs(t, r)[0] != rival.Addr.String() {
		t.Fatalf("new owner not answered: %v", r)
	}
	if !strings.Contains(box.Proc.Out.String(), "owner defends the name") {
		t.Errorf("no log of the challenge")
	}

	// The table survives a restart of the box (written at shutdown,
	// not on every registration).
	box.Stop()
	startBox(t, box)
	r = exchange(t, c, srv, wire.NewQuery(8, name, false, true), 2*time.Second)
	if r == nil || r.Kind() != wire.KindPositiveQuery || nbAddrs(t, r)[0] != rival.Addr.String() {
		t.Fatalf("after a restart: %v", r)
	}
	// A refresh from the owner keeps it; a release removes it.
	if r := exchange(t, c, srv, wire.NewRefresh(9, name, 300, wire.NB{Addr: rival.Addr}), 2*time.Second); r == nil || r.Kind() != wire.KindPositiveRegistration {
		t.Fatalf("refresh: %v", r)
	}
	if r := exchange(t, c, srv, wire.NewRelease(10, name, wire.NB{Addr: rival.Addr}, false), 2*time.Second); r == nil || r.Kind() != wire.KindPositiveRelease {
		t.Fatalf("release: %v", r)
	}
	if r := exchange(t, c, srv, wire.NewQuery(11, name, false, true), 2*time.Second); r == nil || r.Kind() != wire.KindNegativeQuery {
		t.Fatalf("after the release: %v", r)
	}
}

// Item 4: a second concierge with the same name detects the conflict at
// start, says so, and does not claim the name.
func TestNBTSecondBoxConflict(t *testing.T) {
	testnet.Require(t, "nmblookup", "tshark")
	lan := testnet.NewLAN(t, "10.77.8.0/24")
	h1, h2, pc := lan.AddHost("box1", 1), lan.AddHost("box2", 2), lan.AddHost("pc", 3)
	b1, b2 := nbtBox(t, h1), nbtBox(t, h2)
	capture(t, h2)
	startBox(t, b1)
	b1.WaitNamesClaimed(1)
	startBox(t, b2)
	b2.WaitNamesClaimed(1)
	if !strings.Contains(b2.Proc.Out.String(), "NetBIOS name conflict") {
		t.Fatalf("second box logs no conflict:\n%s", b2.Proc.Out.String())
	}
	for _, line := range strings.Split(b2.Proc.Out.String(), "\n") {
		if strings.Contains(line, "conflict") {
			t.Logf("box2: %s", line)
		}
	}
	names := b2.CLI("nbt", "names")
	for _, n := range []string{"CONCIERGE<00>", "CONCIERGE<03>", "CONCIERGE<20>"} {
		if !regexp.MustCompile(regexp.QuoteMeta(n) + `\s+unique\s+conflict \(owned by ` + regexp.QuoteMeta(h1.Addr.String())).MatchString(names) {
			t.Errorf("box2 does not show %s in conflict:\n%s", n, names)
		}
	}
	out, err := pc.Nmblookup("-B", lan.Broadcast().String(), "CONCIERGE#20")
	if err != nil || !strings.Contains(out, h1.Addr.String()+" CONCIERGE<20>") || strings.Contains(out, h2.Addr.String()+" ") {
		t.Errorf("broadcast lookup should find box1 only: %v\n%s", err, out)
	}
	if n := b1.CLI("nbt", "names"); strings.Contains(n, "conflict") {
		t.Errorf("box1 lost its names:\n%s", n)
	}
}

// Item 6 (the live part): a flood of random bytes and mangled packets
// neither crashes nor stalls the service; not one of them is answered,
// and each is accounted for: counted as malformed or ignored by the
// service, or dropped by the kernel when the socket's buffer was full.
func TestNBTFlood(t *testing.T) {
	testnet.Require(t, "tshark")
	lan := testnet.NewLAN(t, "10.77.9.0/24")
	boxH, pc := lan.AddHost("box", 1), lan.AddHost("pc", 2)
	box := nbtBox(t, boxH, "nbt.rate_limit", "1000000", "nbt.rate_burst", "1000000")
	capture(t, boxH)
	// The same display filter that finds nothing wrong in what the box
	// sends must find the garbage the client sends: the check can fail.
	garbage := pc.Capture("udp port 137")
	startBox(t, box)
	box.WaitNamesClaimed(1)
	c := pc.ListenUDP(0)
	dst := netip.AddrPortFrom(boxH.Addr, 137)
	before, kernelBefore := nbtCounters(t, box), udpRcvbufErrors(t, boxH)
	valid, _ := wire.NewRegistration(1, wire.MustName("X", 0, ""), 1, wire.NB{Addr: pc.Addr}, false).Pack()
	rng := rand.New(rand.NewPCG(1, 2))
	sent, skipped := 0, 0
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		var b []byte
		if sent%2 == 0 {
			b = make([]byte, rng.IntN(600))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		} else {
			b = bytes.Clone(valid)
			b[2] |= 0x80 // a response nobody asked for, or a mangled request
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
		}
		// A mangling that happens to leave a well-formed request is no
		// garbage: the box may answer it.
		if p, err := wire.Parse(b); err == nil && !p.Response && p.Kind() != wire.KindUnknown {
			skipped++
			continue
		}
		c.WriteToUDPAddrPort(b, dst)
		sent++
		if sent%64 == 0 {
			time.Sleep(time.Millisecond) // pace the flood a little
		}
	}
	// Every packet sent is either counted by the box or dropped by the
	// kernel because the socket's buffer was full. Wait until the box has
	// worked through its backlog, so that the query below is not dropped
	// behind it.
	var malformed, ignored, kernel int
	accounted := func() bool {
		after := nbtCounters(t, box)
		malformed = after["dropped malformed"] - before["dropped malformed"]
		ignored = after["ignored"] - before["ignored"]
		kernel = udpRcvbufErrors(t, boxH) - kernelBefore
		return malformed+ignored+kernel >= sent
	}
	drained := time.Now()
	testnet.WaitFor(30*time.Second, accounted) // checked exactly below
	t.Logf("backlog worked through in %v", time.Since(drained))
	t.Logf("dropped malformed %d, ignored %d, dropped by the kernel %d", malformed, ignored, kernel)
	// The box reads its socket in order: everything it said about the
	// garbage arrives before the answer to this query.
	q := wire.NewQuery(0x9999, wire.MustName("CONCIERGE", 0x20, ""), false, true)
	qb, _ := q.Pack()
	start := time.Now()
	c.WriteToUDPAddrPort(qb, dst)
	answers := 0
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no answer after the flood: %v\n%s", err, box.Proc.Out.String())
		}
		if r, err := wire.Parse(buf[:n]); err == nil && r.ID == q.ID && r.Kind() == wire.KindPositiveQuery {
			break
		}
		answers++
	}
	t.Logf("flood: %d garbage packets sent (%d well-formed requests left out), %d answered; answer after the flood in %v",
		sent, skipped, answers, time.Since(start))
	if answers != 0 {
		t.Errorf("%d answers to %d garbage packets, want none", answers, sent)
	}
	flagged, _ := garbage.Stop(testnet.Flagged(pc.Addr))
	if n := strings.Count(flagged, "\n"); n < sent/10 {
		t.Errorf("Wireshark flags only %d of %d garbage packets: the malformed check would not notice", n, sent)
	} else {
		t.Logf("Wireshark flags %d of the %d garbage packets", n, sent)
	}
	if box.Proc.Exited() {
		t.Fatal("concierge exited")
	}
	if malformed+ignored+kernel != sent {
		t.Errorf("%d malformed + %d ignored + %d dropped by the kernel = %d, want the %d packets sent",
			malformed, ignored, kernel, malformed+ignored+kernel, sent)
	}
}

// nbtCounters reads the counters "concierge nbt names" prints.
func nbtCounters(t *testing.T, box *testnet.Box) map[string]int {
	t.Helper()
	out := box.CLI("nbt", "names")
	if !strings.Contains(out, "\nCOUNTER") {
		t.Fatalf("no counters:\n%s", out)
	}
	return testnet.ParseNBTNames(out).Counters
}

// udpRcvbufErrors is the kernel's count of datagrams dropped in the host's
// namespace because a socket's receive buffer was full.
func udpRcvbufErrors(t *testing.T, h *testnet.Host) int {
	t.Helper()
	out, err := h.Output("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names, values []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "Udp:" {
			if names == nil {
				names = f
			} else {
				values = f
			}
		}
	}
	for i, n := range names {
		if n == "RcvbufErrors" && i < len(values) {
			v, _ := strconv.Atoi(values[i])
			return v
		}
	}
	t.Fatalf("no Udp RcvbufErrors in /proc/net/snmp:\n%s", out)
	return 0
}

// Safety: with two LANs the box runs one socket per interface and answers
// each from the address (and with the MAC) of the interface the request
// came in on; a query from outside the interface's subnets is ignored
// until nbt.allow_remote is set, which applies live.
func TestNBTTwoInterfacesAndRemote(t *testing.T) {
	testnet.Require(t, "nmblookup", "nbtscan", "tshark")
	lanA := testnet.NewLAN(t, "10.77.10.0/24")
	lanB := testnet.NewLAN(t, "10.77.11.0/24")
	boxH, pcA := lanA.AddHost("box", 1), lanA.AddHost("pca", 2)
	pcB := lanB.AddHost("pcb", 2)
	boxB := lanB.Join(boxH, "eth1", 1)
	box := nbtBox(t, boxH, "nbt.interfaces", "") // every interface with a broadcast address
	capture(t, boxH)
	startBox(t, box)
	box.WaitNamesClaimed(1)

	out, err := pcA.Nmblookup("-B", lanA.Broadcast().String(), "CONCIERGE#20")
	if err != nil || !strings.Contains(out, boxH.Addr.String()+" CONCIERGE<20>") {
		t.Errorf("LAN A: %v\n%s", err, out)
	}
	out, err = pcB.Nmblookup("-B", lanB.Broadcast().String(), "CONCIERGE#20")
	if err != nil || !strings.Contains(out, boxB.String()+" CONCIERGE<20>") {
		t.Errorf("LAN B: %v\n%s", err, out)
	}
	macB, _ := boxH.Output("cat", "/sys/class/net/eth1/address")
	out, err = pcB.Output("nbtscan", "-v", "-s", ":", boxB.String())
	if err != nil || !strings.Contains(out, boxB.String()+":MAC:"+strings.TrimSpace(macB)) {
		t.Errorf("nbtscan on LAN B wants eth1's MAC %s: %v\n%s", macB, err, out)
	}
	// Exactly one answer per broadcast, from the interface's address and
	// port 137.
	c := pcB.ListenUDP(0)
	q, _ := wire.NewQuery(0x77, wire.MustName("CONCIERGE", 0x00, ""), true, false).Pack()
	c.WriteToUDPAddrPort(q, netip.AddrPortFrom(lanB.Broadcast(), 137))
	buf := make([]byte, 1500)
	answers := 0
	c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		answers++
		p, perr := wire.Parse(buf[:n])
		if perr != nil || from != netip.AddrPortFrom(boxB, 137) || nbAddrs(t, p)[0] != boxB.String() {
			t.Errorf("answer from %v: %v %v", from, p, perr)
		}
	}
	if answers != 1 {
		t.Errorf("%d answers to one broadcast query, want 1", answers)
	}

	// A source outside LAN A's subnet, arriving on LAN A.
	pcA.Run("ip", "addr", "add", "10.77.12.2/32", "dev", "eth0")
	boxH.Run("ip", "route", "add", "10.77.12.0/24", "dev", "eth0")
	var remote *net.UDPConn
	if err := pcA.InNS(func() error {
		var err error
		remote, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.77.12.2")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	dst := netip.AddrPortFrom(boxH.Addr, 137)
	if r := exchange(t, remote, dst, wire.NewQuery(0x88, wire.MustName("CONCIERGE", 0x20, ""), false, true), time.Second); r != nil {
		t.Errorf("answer to a query from outside the LAN: %v", r)
	}
	if r := exchange(t, remote, dst, wire.NewNodeStatusRequest(0x89, wire.Wildcard), time.Second); r != nil {
		t.Errorf("node status answered outside the LAN: %v", r)
	}
	if names := box.CLI("nbt", "names"); !regexp.MustCompile(`dropped outside the LAN\s+2`).MatchString(names) {
		t.Errorf("counter of remote drops:\n%s", names)
	}
	// The change restarts the service, which claims its names again.
	box.CLI("config", "set", "nbt.allow_remote", "true")
	box.WaitNamesClaimed(2)
	r := exchange(t, remote, dst, wire.NewQuery(0x90, wire.MustName("CONCIERGE", 0x20, ""), false, true), 2*time.Second)
	if r == nil || r.Kind() != wire.KindPositiveQuery {
		t.Fatalf("allow_remote did not apply: %v\n%s", r, box.Proc.Out.String())
	}
}

// The box starts without a LAN interface up, claims its names once one
// comes up, and follows an address change (a new DHCP lease).
func TestNBTInterfaceChanges(t *testing.T) {
	testnet.Require(t, "nmblookup", "tshark")
	lan := testnet.NewLAN(t, "10.77.14.0/24")
	boxH, pc := lan.AddHost("box", 1), lan.AddHost("pc", 2)
	box := nbtBox(t, boxH, "nbt.interfaces", "")
	boxH.Run("ip", "link", "set", "eth0", "down")
	box.Start(0)
	if !testnet.WaitFor(10*time.Second, func() bool { return strings.Contains(box.Proc.Out.String(), "waiting for one") }) || box.Proc.Exited() {
		t.Fatalf("concierge did not start without a LAN interface:\n%s", box.Proc.Out.String())
	}
	if out := box.CLI("nbt", "names"); !strings.Contains(out, "waiting for a LAN interface") {
		t.Errorf("nbt names without an interface:\n%s", out)
	}
	boxH.Run("ip", "link", "set", "eth0", "up")
	capture(t, boxH)
	// The service starts (and later restarts) when the kernel reports the
	// change, well before its once-a-minute look at the interfaces; each
	// start ends with its names claimed.
	find := func(starts int, bcast, want string) {
		t.Helper()
		box.WaitNamesClaimed(starts)
		out, err := pc.Nmblookup("-B", bcast, "CONCIERGE#20")
		if err != nil || !strings.Contains(out, want+" CONCIERGE<20>") {
			t.Fatalf("box not found at %s: %v\n%s\n%s", want, err, out, box.Proc.Out.String())
		}
	}
	find(1, lan.Broadcast().String(), boxH.Addr.String())

	pc.Run("ip", "addr", "add", "10.77.15.2/24", "brd", "+", "dev", "eth0")
	boxH.Run("ip", "addr", "del", boxH.Addr.String()+"/24", "dev", "eth0")
	boxH.Run("ip", "addr", "add", "10.77.15.1/24", "brd", "+", "dev", "eth0")
	find(2, "10.77.15.255", "10.77.15.1")
	if !strings.Contains(box.Proc.Out.String(), "LAN interfaces changed") {
		t.Errorf("no log of the change")
	}
}

// Conflicts with Samba's nmbd, both ways: the box does not claim a name
// nmbd already holds, and nmbd is refused a name the box holds.
func TestNBTConflictWithNmbd(t *testing.T) {
	testnet.Require(t, "nmbd", "nmblookup", "tshark")
	lan := testnet.NewLAN(t, "10.77.16.0/24")
	boxH, pc := lan.AddHost("box", 1), lan.AddHost("pc", 2)
	box := nbtBox(t, boxH, "nbt.name", "OFFICEPC")
	capture(t, boxH)
	nmbd := pc.StartNmbd("OFFICEPC", "OFFICE")
	// nmbd answers broadcasts a few seconds after it starts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := boxH.Nmblookup("-B", lan.Broadcast().String(), "OFFICEPC#20")
		if err == nil && strings.Contains(out, pc.Addr.String()+" OFFICEPC<20>") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nmbd does not answer for its name:\n%s\n%s", out, nmbd.Out.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	startBox(t, box)
	box.WaitNamesClaimed(1)
	names := box.CLI("nbt", "names")
	for _, n := range []string{"OFFICEPC<00>", "OFFICEPC<20>"} {
		if !regexp.MustCompile(regexp.QuoteMeta(n) + `\s+unique\s+conflict \(owned by ` + regexp.QuoteMeta(pc.Addr.String())).MatchString(names) {
			t.Errorf("box does not show %s in conflict with nmbd:\n%s", n, names)
		}
	}
	if out, _ := pc.Nmblookup("-B", lan.Broadcast().String(), "OFFICEPC#20"); strings.Contains(out, boxH.Addr.String()+" ") {
		t.Errorf("the box answers for nmbd's name:\n%s", out)
	}

	// The other way: the box holds CONCIERGE; an nmbd that wants it is
	// refused and does not answer for it.
	box.Stop()
	box.CLI("config", "set", "nbt.name", "CONCIERGE")
	startBox(t, box)
	box.WaitNamesClaimed(1)
	rival := lan.AddHost("rival", 3)
	rnmbd := rival.StartNmbd("CONCIERGE", "OFFICE")
	if !testnet.WaitFor(30*time.Second, func() bool { return strings.Contains(box.Proc.Out.String(), "defending our name") }) {
		t.Fatalf("nmbd's registration of CONCIERGE was not defended:\n%s", rnmbd.Out.String())
	}
	// nmbd retries its broadcast registration a few times before it
	// gives up and says so.
	testnet.WaitFor(30*time.Second, func() bool {
		return strings.Contains(rnmbd.Out.String(), "Failed to register my name CONCIERGE<20>")
	})
	for _, l := range strings.Split(rnmbd.Out.String(), "\n") {
		if strings.Contains(strings.ToLower(l), "refus") || strings.Contains(strings.ToLower(l), "fail") {
			t.Logf("nmbd: %s", strings.TrimSpace(l))
		}
	}
	if !strings.Contains(rnmbd.Out.String(), "Failed to register my name CONCIERGE<20>") {
		t.Errorf("nmbd does not report its registration of CONCIERGE<20> refused")
	}
	out, _ := pc.Nmblookup("-B", lan.Broadcast().String(), "CONCIERGE#20")
	if !strings.Contains(out, boxH.Addr.String()+" CONCIERGE<20>") || strings.Contains(out, rival.Addr.String()) {
		t.Errorf("CONCIERGE should be answered by the box only:\n%s\nnmbd:\n%s", out, rnmbd.Out.String())
	}
}

// Issue 9, item 9: one LAN host cannot fill the WINS table. impacket
// registers name after name with the box as its WINS server; past the
// bound per address the box refuses with RFS_ERR (RFC 1002 4.2.6) and
// says so once in its log, while another PC still registers. A TTL of 0
// (infinite) is granted the maximum TTL only, and the table the box
// writes at shutdown keeps no name longer.
func TestNBTWINSCapWithImpacket(t *testing.T) {
	testnet.Require(t, "nmblookup", "tshark")
	lan := testnet.NewLAN(t, "10.77.17.0/24")
	boxH, flooder, pc := lan.AddHost("box", 1), lan.AddHost("flood", 2), lan.AddHost("pc", 3)
	box := nbtBox(t, boxH, "nbt.wins_max_names_per_owner", "8", "nbt.wins_max_ttl", "1h")
	capture(t, boxH)
	startBox(t, box)
	box.WaitNamesClaimed(1)

	py := fmt.Sprintf(`from impacket import nmb
n = nmb.NetBIOS()
for i in range(20):
    try:
        n.name_registration_request("FLOOD%%d" %% i, %q, nmb.TYPE_WORKSTATION, None, 0, %q)
        print("ACCEPTED", i)
    except nmb.NetBIOSError as e:
        print("REFUSED", i, e.error_code)
`, boxH.Addr.String(), flooder.Addr.String())
	out, err := flooder.Output("/usr/bin/python3", "-c", py)
	if err != nil {
		t.Fatalf("impacket: %v\n%s", err, out)
	}
	if a, r := strings.Count(out, "ACCEPTED"), strings.Count(out, "REFUSED"); a != 8 || r != 12 || strings.Count(out, "REFUSED") != len(regexp.MustCompile(`REFUSED \d+ 5\n`).FindAllString(out, -1)) {
		t.Errorf("impacket: %d registrations accepted, %d refused; want 8, and 12 refused with RFS_ERR (5):\n%s", a, r, out)
	}

	// Another PC registers, with TTL 0, and gets the maximum TTL.
	c := pc.ListenUDP(0)
	srv := netip.AddrPortFrom(boxH.Addr, 137)
	r := exchange(t, c, srv, wire.NewRegistration(1, wire.MustName("OFFICEPC", 0x00, ""), 0, wire.NB{Addr: pc.Addr}, false), 2*time.Second)
	if r == nil || r.Kind() != wire.KindPositiveRegistration || r.Answers[0].TTL != 3600 {
		t.Fatalf("registration of another PC with TTL 0: %v (want a positive response granting 3600s)", r)
	}
	for name, want := range map[string]bool{"FLOOD0#00": true, "FLOOD7#00": true, "FLOOD8#00": false, "OFFICEPC#00": true} {
		out, err := pc.Nmblookup("-U", boxH.Addr.String(), "--recursion", name)
		if found := err == nil && strings.Contains(out, name[:strings.Index(name, "#")]+"<00>"); found != want {
			t.Errorf("nmblookup %s: found %v, want %v:\n%s", name, found, want, out)
		}
	}
	if c := nbtCounters(t, box); c["refused: owner at its name limit"] != 12 || c["granted TTL capped"] != 9 {
		t.Errorf("counters: %v", c)
	}
	log := box.Proc.Out.String()
	if n := strings.Count(log, "WINS registration refused: the address holds as many names as it may"); n != 1 {
		t.Errorf("%d log lines of the refusals, want 1 (at most one a minute)", n)
	}
	if !strings.Contains(log, "granted another TTL than asked") {
		t.Errorf("no log line of the TTL capped")
	}

	box.Stop()
	stopped := time.Now()
	data, err := os.ReadFile(filepath.Join(box.Data, "nbt-wins.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Names []struct {
			Name   string `json:"name"`
			Owners []struct {
				Expires time.Time `json:"expires"`
			} `json:"owners"`
		} `json:"names"`
	}
	if err := json.Unmarshal(data, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Names) != 9 {
		t.Errorf("%d names saved, want 9", len(table.Names))
	}
	for _, n := range table.Names {
		for _, o := range n.Owners {
			if o.Expires.After(stopped.Add(time.Hour)) {
				t.Errorf("%s saved to expire at %v, over an hour after the box stopped (%v)", n.Name, o.Expires, stopped)
			}
		}
	}
}

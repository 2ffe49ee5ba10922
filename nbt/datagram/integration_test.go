package datagram_test

// Issue 13, the NBDD and name resolution of the datagram service against
// the real "concierge serve" in network namespaces: Samba's nmbd as a
// WINS client registers the group TEAM<00> with the box, a raw P-node
// member registers too, and a P-node's DIRECT_GROUP datagram sent to the
// box reaches both (the raw member reads it byte for byte, the capture
// shows the copy to nmbd's host); DATAGRAM QUERY REQUESTs are answered
// from the WINS table; "nbt send" to a name only another nmbd on the LAN
// holds is resolved by a broadcast query and sent there. tshark checks
// every datagram the box sent.

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

// register registers n for h's address with the box's WINS (unicast,
// RFC 1002 4.2.2) from a socket of h and fails unless it is granted.
func register(t *testing.T, h *testnet.Host, box netip.Addr, n wire.Name, flags uint16) {
	t.Helper()
	c := h.ListenUDP(0)
	p := wire.NewRegistration(42, n, 300, wire.NB{Flags: flags, Addr: h.Addr}, false)
	b, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for try := 0; ; try++ {
		c.WriteToUDPAddrPort(b, netip.AddrPortFrom(box, 137))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := c.Read(buf)
		if err != nil && try < 3 {
			continue
		}
		if err != nil {
			t.Fatalf("registration of %s: %v", n, err)
		}
		r, err := wire.Parse(buf[:k])
		if err != nil || r.Kind() != wire.KindPositiveRegistration {
			t.Fatalf("registration of %s: %v %v", n, r, err)
		}
		return
	}
}

func TestNBDDRelayAndResolve(t *testing.T) {
	testnet.Require(t, "tshark", "nmbd")
	lan := testnet.NewLAN(t, "10.77.133.0/24")
	boxH, pc, m1, m2 := lan.AddHost("box", 1), lan.AddHost("pc", 2), lan.AddHost("m1", 3), lan.AddHost("m2", 4)
	b := testnet.NewBox(t, boxH)
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"nbt.enabled", "true"}, {"nbt.interfaces", boxH.IF}, {"nbt.wins_server", "true"},
	} {
		b.CLI("config", "set", kv[0], kv[1])
	}
	capt := boxH.Capture("udp port 138")
	var all string
	t.Cleanup(func() {
		if all != "" {
			return
		}
		bad, _ := capt.Stop(testnet.Flagged(boxH.Addr))
		if strings.TrimSpace(bad) != "" {
			t.Errorf("Wireshark flags datagrams the box sent:\n%s", bad)
		}
	})
	b.Start(137)
	b.WaitNamesClaimed(1)

	// The members of TEAM<00>: nmbd as a WINS client of the box (its
	// workgroup), and a raw P-node that reads port 138 itself.
	nmbd := m1.StartNmbd("MEMBER1", "TEAM", "wins server = "+boxH.Addr.String())
	team := wire.MustName("TEAM", 0x00, "")
	register(t, m2, boxH.Addr, team, wire.NBGroup|wire.NBOntP)
	m2c := m2.ListenUDP(138)
	var names string
	if !testnet.WaitFor(30*time.Second, func() bool {
		names = b.CLI("nbt", "names")
		return slices.Contains(testnet.ParseNBTNames(names).Owners("TEAM<00>"), m1.Addr.String())
	}) {
		t.Fatalf("nmbd did not join TEAM<00> on the box:\n%s\n%s", names, nmbd.Out.String())
	}

	// A P-node on pc sends a DIRECT_GROUP datagram to the box as NBDD.
	pcc := pc.ListenUDP(0)
	d := wire.Datagram{Type: wire.DgmDirectGroup, Flags: wire.DgmFlagFirst | wire.DgmSNTP, ID: 901, SourceIP: pc.Addr,
		SourcePort: 138, Source: wire.MustName("PCP", 0x00, ""), Dest: team, Data: []byte("to the whole team")}
	msg, _ := d.Pack()
	pcc.WriteToUDPAddrPort(msg, netip.AddrPortFrom(boxH.Addr, 138))
	m2c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := m2c.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) || from.Addr() != boxH.Addr {
		t.Fatalf("relayed datagram at m2: %v from %s: %x, want %x", err, from, buf[:n], msg)
	}
	// DATAGRAM QUERY REQUEST (RFC 1002 4.4.4): positive for the group
	// the table knows, negative for a name nobody holds.
	for _, q := range []struct {
		name wire.Name
		want uint8
	}{{team, wire.DgmQueryPositive}, {wire.MustName("NOBODY", 0x00, ""), wire.DgmQueryNegative}} {
		qd := wire.Datagram{Type: wire.DgmQueryRequest, ID: 902, SourceIP: pc.Addr, SourcePort: 138, Dest: q.name}
		qm, _ := qd.Pack()
		pcc.WriteToUDPAddrPort(qm, netip.AddrPortFrom(boxH.Addr, 138))
		pcc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := pcc.Read(buf)
		if err != nil {
			t.Fatalf("datagram query %s: %v", q.name, err)
		}
		if r, err := wire.ParseDatagram(buf[:n]); err != nil || r.Type != q.want || r.ID != 902 || !r.Dest.Equal(q.name) {
			t.Fatalf("datagram query %s: %+v %v", q.name, r, err)
		}
	}

	// "nbt send" to a name the box has never heard of: nmbd on pc holds
	// LANPC<00> on the LAN only (no WINS), so the box has to ask.
	pcNmbd := pc.StartNmbd("LANPC", "WORKGROUP")
	if !testnet.WaitFor(20*time.Second, func() bool {
		_, err := pc.Nmblookup("-B", pc.Addr.String(), "LANPC#00")
		return err == nil
	}) {
		t.Fatalf("nmbd on pc does not answer for LANPC<00>:\n%s", pcNmbd.Out.String())
	}
	if strings.Contains(b.CLI("nbt", "names"), "LANPC") {
		t.Fatal("LANPC is in the WINS table: the test would not show resolution")
	}
	if out, err := b.CLITry("", "nbt", "send", "LANPC#00", "hello from the box"); err != nil {
		t.Fatalf("nbt send LANPC#00: %v %s\n%s", err, out, b.Proc.Out.String())
	}
	if out, err := b.CLITry("", "nbt", "send", "NOBODY#03", "hello"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("nbt send to an unknown name: %v %s", err, out)
	}

	var bad string
	bad, all = capt.Stop(testnet.Flagged(boxH.Addr))
	if strings.TrimSpace(bad) != "" {
		t.Errorf("Wireshark flags datagrams the box sent:\n%s", bad)
	}
	sent := capt.Read(fmt.Sprintf("ip.src == %s && ip.dst == %s && nbdgm.type == 0x11", boxH.Addr, m1.Addr))
	if !strings.Contains(sent, "Direct_group datagram") {
		t.Errorf("no DIRECT_GROUP datagram to nmbd's host %s:\n%s", m1.Addr, all)
	}
	sent = capt.Read(fmt.Sprintf("ip.src == %s && ip.dst == %s && nbdgm.type == 0x10", boxH.Addr, pc.Addr))
	if !strings.Contains(sent, "Direct_unique datagram") {
		t.Errorf("no DIRECT_UNIQUE datagram from nbt send to %s:\n%s", pc.Addr, all)
	}
	if out := b.CLI("nbt", "sessions"); !regexp.MustCompile(`datagram nbdd_relayed +[2-9]`).MatchString(out) {
		t.Errorf("relays not counted:\n%s", out)
	}
}

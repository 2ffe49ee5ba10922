package session_test

// Acceptance tests of issue 13 (items 2, 3, 4 and 6) against the real
// "concierge serve" in network namespaces: impacket's NetBIOSTCPSession to
// a gateway name with a TCP echo service behind it on another host, an
// unknown name, a retarget; raw DIRECT_UNIQUE datagrams; tshark on the
// box checking Wireshark's NBSS and NBDS dissectors.

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

const lanScript = `
import sys, socket
from impacket import nmb
from impacket.nmb import NetBIOSTCPSession, NetBIOSError
box = sys.argv[1]
s = NetBIOSTCPSession('PC1', 'ACCOUNTS', box, sess_port=139)
data = bytes(range(256)) * 300
s.send_packet(data)
got = b''
while len(got) < len(data):
    got += s.recv_packet(10).get_trailer()
assert got == data, 'echo differs'
s.close()
print('ECHO OK')
try:
    NetBIOSTCPSession('PC1', 'NOBODY', box, sess_port=139)
except NetBIOSError as e:
    print('REFUSED', e.error_msg)
def raw(called):
    p = nmb.NetBIOSSessionPacket()
    p.set_type(nmb.NETBIOS_SESSION_REQUEST)
    p.set_trailer(nmb.encode_name(called, nmb.TYPE_SERVER, '') + nmb.encode_name('PC1', nmb.TYPE_WORKSTATION, ''))
    c = socket.create_connection((box, 139), 10)
    c.sendall(p.rawData())
    r = nmb.NetBIOSSessionPacket(c.recv(64))
    c.close()
    return r.get_type(), r.get_trailer()
t, tr = raw('NOBODY')
print('NEGATIVE', hex(t), hex(tr[0]))
t, tr = raw('OLDHOST')
print('RETARGET', hex(t), socket.inet_ntoa(tr[:4]), int.from_bytes(tr[4:6], 'big'))
from impacket.smbconnection import SMBConnection
try:
    SMBConnection('CONCIERGE', box, sess_port=139, timeout=10)
    print('UNEXPECTED SMB')
except Exception as e:
    print('SMB FAILED', str(e)[:80])
`

func TestNBSSGatewayImpacketAndDatagrams(t *testing.T) {
	testnet.Require(t, "tshark")
	if err := exec.Command("/usr/bin/python3", "-c", "import impacket.nmb").Run(); err != nil {
		t.Fatal("needs python3-impacket (make test-deps)")
	}
	lan := testnet.NewLAN(t, "10.77.131.0/24")
	boxH, pc, svc := lan.AddHost("box", 1), lan.AddHost("pc", 2), lan.AddHost("svc", 3)

	// The TCP echo service behind the gateway, on its own host.
	svc.ServeTCP(t, 7007, func(c net.Conn) { io.Copy(c, c) })

	b := testnet.NewBox(t, boxH)
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"nbt.enabled", "true"}, {"nbt.interfaces", boxH.IF},
		{"nbt.gateways", "ACCOUNTS#20=" + svc.Addr.String() + ":7007"},
		{"nbt.retarget", "OLDHOST#20=10.77.131.9:1139"},
	} {
		b.CLI("config", "set", kv[0], kv[1])
	}
	capt := boxH.Capture("tcp port 139 or udp port 138")
	t.Cleanup(func() {
		bad, all := capt.Stop(testnet.Flagged(boxH.Addr))
		t.Logf("tshark: %d packets", strings.Count(all, "\n"))
		if strings.TrimSpace(bad) != "" {
			t.Errorf("Wireshark flags packets the box sent:\n%s", bad)
		}
		if !strings.Contains(all, "NBSS") || !strings.Contains(all, "NBDS") {
			t.Errorf("capture without NBSS and NBDS packets:\n%s", all)
		}
	})
	b.Start(139)
	b.WaitNamesClaimed(1)
	if out := b.CLI("nbt", "names"); !strings.Contains(out, "ACCOUNTS<20>") {
		t.Errorf("the gateway name is not claimed:\n%s", out)
	}

	out, err := pc.Command("/usr/bin/python3", "-c", lanScript, boxH.Addr.String()).CombinedOutput()
	t.Logf("impacket:\n%s", out)
	if err != nil {
		t.Fatalf("impacket: %v\n%s", err, b.Proc.Out.String())
	}
	for _, want := range []string{"ECHO OK", "REFUSED Cannot request session", "NEGATIVE 0x83 0x82",
		"RETARGET 0x84 10.77.131.9 1139", "SMB FAILED"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("impacket output lacks %q", want)
		}
	}
	if !b.Proc.WaitOutput(5*time.Second, func(s string) bool { return strings.Contains(s, "SMB is not offered") }) {
		t.Errorf("no log line saying SMB is not offered")
	}

	// Datagrams: one to a name the box does not hold gets DATAGRAM
	// ERROR 0x82.
	c := pc.ListenUDP(0)
	dst := netip.AddrPortFrom(boxH.Addr, 138)
	d := wire.Datagram{Type: wire.DgmDirectUnique, Flags: wire.DgmFlagFirst, ID: 77, SourceIP: pc.Addr, SourcePort: 138,
		Source: wire.MustName("PC1", 0, ""), Dest: wire.MustName("NOBODY", 0x03, ""), Data: []byte("hi")}
	msg, _ := d.Pack()
	c.WriteToUDPAddrPort(msg, dst)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no DATAGRAM ERROR: %v", err)
	}
	if e, err := wire.ParseDatagram(buf[:n]); err != nil || e.Type != wire.DgmError || e.Code != wire.DgmErrNotPresent || e.ID != 77 {
		t.Fatalf("answer %+v %v", e, err)
	}
	// A DIRECT_UNIQUE datagram to the box's messenger name reaches its
	// listener (nbt messages), whole and in fragments, from another host.
	long := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 40) // 1,440 bytes: 3 fragments
	for i, text := range []string{"hello box", long} {
		frags, err := wire.Fragment(wire.Datagram{Type: wire.DgmDirectUnique, ID: uint16(100 + i), SourceIP: pc.Addr, SourcePort: 138,
			Source: wire.MustName("PC1", 0, ""), Dest: wire.MustName("CONCIERGE", 0x03, "")}, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if text == long && len(frags) < 3 {
			t.Fatalf("%d fragments", len(frags))
		}
		for _, f := range frags {
			msg, _ := f.Pack()
			c.WriteToUDPAddrPort(msg, dst)
		}
	}
	var msgs string
	if !testnet.WaitFor(10*time.Second, func() bool {
		msgs = b.CLI("nbt", "messages")
		return strings.Contains(msgs, `"hello box"`) && regexp.MustCompile(fmt.Sprintf(`\b%d +%s`, len(long), regexp.QuoteMeta(fmt.Sprintf("%q", long)))).MatchString(msgs)
	}) {
		t.Errorf("nbt messages lacks the datagrams:\n%s", msgs)
	}
	if out := b.CLI("nbt", "sessions"); !regexp.MustCompile(`datagram reassembled +1\b`).MatchString(out) {
		t.Errorf("no reassembled datagram counted:\n%s", out)
	}

	// Samba's smbclient, calling port 139, gets a session and then a
	// clean close (the box offers no SMB): it ends at once with an error.
	before := strings.Count(b.Proc.Out.String(), "SMB is not offered")
	start := time.Now()
	out, err = pc.Command("timeout", "30", "smbclient", "-s", pc.NmbClientConf(), "-L", boxH.Addr.String(), "-p", "139", "-N").CombinedOutput()
	t.Logf("smbclient (%v, %v):\n%s", time.Since(start).Round(time.Millisecond), err, out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 124 || !strings.Contains(string(out), "NT_STATUS_") {
		t.Errorf("smbclient -L: %v", err)
	}
	if !b.Proc.WaitOutput(5*time.Second, func(s string) bool { return strings.Count(s, "SMB is not offered") > before }) {
		t.Errorf("no log line saying SMB is not offered after smbclient")
	}

	// "nbt send" to the PC's messenger name, registered in the WINS
	// table, arrives as a datagram... the PC is not registered here, so
	// the op reports the name as not found.
	if out, err := b.CLITry("", "nbt", "send", "NOBODY#03", "hello"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("nbt send to an unknown name: %v %s", err, out)
	}
	if out := b.CLI("nbt", "sessions"); !strings.Contains(out, "errors_sent") {
		t.Errorf("nbt sessions:\n%s", out)
	}
}

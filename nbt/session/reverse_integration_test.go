package session_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

// echoPeer is a NetBIOS session service on h's port 139 that accepts
// calls to called and sends every SESSION MESSAGE's payload back (with
// a KEEP ALIVE before each), as a file server's session layer would
// carry SMB.
func echoPeer(t *testing.T, h *testnet.Host, called wire.Name) {
	read := func(c net.Conn) (wire.SessionHeader, []byte, error) {
		var hb [4]byte
		if _, err := io.ReadFull(c, hb[:]); err != nil {
			return wire.SessionHeader{}, nil, err
		}
		hd, err := wire.ParseSessionHeader(hb[:])
		if err != nil {
			return hd, nil, err
		}
		body := make([]byte, hd.Length)
		_, err = io.ReadFull(c, body)
		return hd, body, err
	}
	h.ServeTCP(t, 139, func(c net.Conn) {
		hd, body, err := read(c)
		if err != nil || hd.Type != wire.SessRequest {
			return
		}
		if r, err := wire.ParseSessionRequest(body); err != nil || !r.Called.Equal(called) {
			c.Write(wire.AppendNegative(nil, wire.SessErrNotListeningCalled))
			return
		}
		c.Write([]byte{wire.SessPositive, 0, 0, 0})
		for {
			hd, body, err := read(c)
			if err != nil || hd.Type != wire.SessMessage {
				return
			}
			out, _ := wire.AppendSessionHeader([]byte{wire.SessKeepAlive, 0, 0, 0}, wire.SessMessage, len(body))
			c.Write(append(out, body...))
		}
	})
}

// Issue 13's reverse gateway: a plain TCP client on the box's port 8139
// reaches FILES<20>, a session service on a LAN host whose name only
// that host's nmbd answers for (found by a broadcast query), byte for
// byte both ways; a port mapped to a name nobody holds closes at once
// with a log line; tshark finds nothing wrong in the box's NBSS packets.
func TestReverseGatewayLAN(t *testing.T) {
	testnet.Require(t, "tshark", "nmbd")
	lan := testnet.NewLAN(t, "10.77.134.0/24")
	boxH, pc, files := lan.AddHost("box", 1), lan.AddHost("pc", 2), lan.AddHost("files", 3)
	nmbd := files.StartNmbd("FILES", "WORKGROUP")
	echoPeer(t, files, wire.MustName("FILES", 0x20, ""))

	b := testnet.NewBox(t, boxH)
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"nbt.enabled", "true"}, {"nbt.interfaces", boxH.IF},
		{"nbt.reverse_gateways", "8139=FILES#20, 8140=NOBODY#20"},
	} {
		b.CLI("config", "set", kv[0], kv[1])
	}
	capt := boxH.Capture("tcp port 139")
	b.Start(8139)
	b.WaitNamesClaimed(1)
	if !testnet.WaitFor(20*time.Second, func() bool {
		_, err := pc.Nmblookup("-B", files.Addr.String(), "FILES#20")
		return err == nil
	}) {
		t.Fatalf("nmbd does not answer for FILES<20>:\n%s", nmbd.Out.String())
	}

	c := pc.DialTCP(boxH.Addr.String() + ":8139")
	data := make([]byte, 200_000)
	rand.Read(data)
	go c.Write(data)
	got := make([]byte, len(data))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("through the reverse gateway: %v, equal %v\n%s", err, bytes.Equal(got, data), b.Proc.Out.String())
	}
	c.Close()

	u := pc.DialTCP(boxH.Addr.String() + ":8140")
	u.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := u.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("unknown name: %d %v, want a close", n, err)
	}
	if !b.Proc.WaitOutput(5*time.Second, func(s string) bool { return strings.Contains(s, "reverse gateway: name not found") }) {
		t.Errorf("no log line for the unknown name")
	}
	if out := b.CLI("nbt", "sessions"); !strings.Contains(out, "reverse 8139=FILES<20> bytes_in") {
		t.Errorf("nbt sessions lacks the reverse gateway:\n%s", out)
	}

	bad, all := capt.Stop(testnet.Flagged(boxH.Addr))
	if strings.TrimSpace(bad) != "" {
		t.Errorf("Wireshark flags packets the box sent:\n%s", bad)
	}
	if req := capt.Read(fmt.Sprintf("ip.src == %s && nbss.type == 0x81", boxH.Addr)); !strings.Contains(req, "Session request") {
		t.Errorf("no SESSION REQUEST from the box in the capture:\n%s", all)
	}
}

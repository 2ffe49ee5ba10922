package browse

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"concierge/nbt/datagram"
	"concierge/nbt/wire"
)

var lo = netip.MustParseAddr("127.0.0.1")

func TestHostAnnouncementRoundTrip(t *testing.T) {
	h := HostAnnouncement{UpdateCount: 3, Periodicity: 12 * time.Minute, ServerName: "CONCIERGE", OSMajor: 4, OSMinor: 9,
		ServerType: SVTypeWorkstation, Comment: "office mail"}
	f, err := h.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	// MS-BRWS 2.2.2: opcode, update count, periodicity (LE ms), 16-byte
	// name, version, type, browser version 15.1, signature 0xAA55.
	if f[0] != 1 || f[1] != 3 || f[2] != 0x80 || f[3] != 0xfc || f[4] != 0x0a || f[32-2] != 0x55 || f[31] != 0xaa {
		t.Fatalf("frame % x", f)
	}
	slot, data, err := ParseMailslot(MailslotWrite(f))
	if err != nil || slot != Mailslot {
		t.Fatalf("mailslot %q %v", slot, err)
	}
	got, err := ParseHostAnnouncement(data)
	if err != nil || *got != h {
		t.Fatalf("got %+v %v, want %+v", got, err, h)
	}
	if _, err := (&HostAnnouncement{Comment: string(make([]byte, MaxComment+1))}).Append(nil); err == nil {
		t.Error("a comment of 44 characters is accepted")
	}
}

func FuzzParseMailslot(f *testing.F) {
	h := HostAnnouncement{ServerName: "X", Comment: "c"}
	fr, _ := h.Append(nil)
	f.Add(MailslotWrite(fr))
	f.Add(MailslotWrite([]byte{OpAnnouncementRequest, 0, 'P', 'C', 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		slot, data, err := ParseMailslot(b)
		if err != nil {
			return
		}
		ParseHostAnnouncement(data)
		ParseAnnouncementRequest(data)
		// What parses is re-encoded to the same mailslot and data.
		if s2, d2, err := ParseMailslot(MailslotWrite(data)); err != nil || string(d2) != string(data) || (s2 != Mailslot) {
			t.Fatalf("re-encoded: %q %v", s2, err)
		}
		_ = slot
	})
}

// recvAnnouncement reads the next datagram on c and decodes the Host
// Announcement in it.
func recvAnnouncement(t *testing.T, c *net.UDPConn) (*wire.Datagram, *HostAnnouncement) {
	t.Helper()
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no announcement: %v", err)
	}
	d, err := wire.ParseDatagram(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	slot, f, err := ParseMailslot(d.Data)
	if err != nil || slot != Mailslot {
		t.Fatalf("mailslot %q %v", slot, err)
	}
	h, err := ParseHostAnnouncement(f)
	if err != nil {
		t.Fatal(err)
	}
	return d, h
}

// The announcer sends at start, then with a doubling period up to the
// maximum, and answers an Announcement Request.
func TestAnnouncer(t *testing.T) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dgm := datagram.New(datagram.Config{Addr: lo, Broadcast: lo, Port: peer.LocalAddr().(*net.UDPAddr).Port})
	go dgm.Serve(pc)
	defer dgm.Close()
	a, err := New(Config{Name: "concierge", Workgroup: "OFFICE", Comment: "mail and names",
		FirstPeriod: 100 * time.Millisecond, MaxPeriod: 250 * time.Millisecond, ReplyDelay: 10 * time.Millisecond}, dgm)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	var periods []time.Duration
	for i := 0; i < 4; i++ {
		d, h := recvAnnouncement(t, peer)
		if d.Type != wire.DgmDirectGroup || !d.Dest.Equal(wire.MustName("OFFICE", 0x1d, "")) ||
			!d.Source.Equal(wire.MustName("CONCIERGE", 0, "")) {
			t.Fatalf("datagram %+v", d)
		}
		if h.ServerName != "CONCIERGE" || h.Comment != "mail and names" || h.ServerType != SVTypeWorkstation ||
			h.OSMajor != 4 || h.OSMinor != 9 || h.UpdateCount != uint8(i) {
			t.Fatalf("announcement %+v", h)
		}
		periods = append(periods, h.Periodicity)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}
	for i := range want {
		if periods[i] != want[i] {
			t.Fatalf("periods %v, want %v", periods, want)
		}
	}

	// An Announcement Request to WORKGROUP<00> brings an announcement
	// before the next period.
	req := wire.Datagram{Type: wire.DgmDirectGroup, Flags: wire.DgmFlagFirst, ID: 9, SourceIP: lo, SourcePort: 138,
		Source: wire.MustName("MASTER", 0, ""), Dest: wire.MustName("OFFICE", 0, ""),
		Data: MailslotWrite([]byte{OpAnnouncementRequest, 0, 'M', 'A', 'S', 'T', 'E', 'R', 0})}
	b, _ := req.Pack()
	peer.WriteToUDPAddrPort(b, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	for a.Counters()["announce_requests"] == 0 {
		recvAnnouncement(t, peer)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := a.Counters(); c["announcements"] < 5 || c["announce_failed"] != 0 {
		t.Errorf("counters %v", c)
	}
}

package datagram

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"concierge/nbt/wire"
)

var (
	box  = wire.MustName("CONCIERGE", 0x03, "")
	pc1  = wire.MustName("PC1", 0x00, "")
	lo   = netip.MustParseAddr("127.0.0.1")
	ctxT = 10 * time.Second
)

// start runs a server on loopback and returns it with a client socket
// whose port is the server's "port 138".
func start(t testing.TB, cfg Config) (*Server, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr, cfg.Broadcast = lo, lo
	cfg.Port = client.LocalAddr().(*net.UDPAddr).Port
	s := New(cfg)
	go s.Serve(pc)
	t.Cleanup(func() {
		s.Close()
		if p := s.Counters()["panics"]; p != 0 {
			t.Errorf("%d panics", p)
		}
	})
	return s, client, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, d *wire.Datagram) {
	t.Helper()
	b, err := d.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func recvDgm(t *testing.T, c *net.UDPConn) *wire.Datagram {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ctxT))
	buf := make([]byte, 2000)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := wire.ParseDatagram(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func recv(t *testing.T, l *Listener) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctxT)
	defer cancel()
	m, err := l.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDeliverFragmentsAndError(t *testing.T) {
	s, c, srv := start(t, Config{Holds: func(n wire.Name) bool { return n.Equal(box) }})
	l, err := s.Listen(box)
	if err != nil {
		t.Fatal(err)
	}
	base := wire.Datagram{Type: wire.DgmDirectUnique, ID: 1, SourceIP: lo, SourcePort: 138, Source: pc1, Dest: box}
	// One datagram.
	d := base
	d.Flags, d.Data = wire.DgmFlagFirst, []byte("hello")
	send(t, c, srv, &d)
	if m := recv(t, l); string(m.Data) != "hello" || !m.Source.Equal(pc1) || m.From != netip.MustParseAddrPort("127.0.0.1:138") {
		t.Fatalf("got %+v", m)
	}
	// Fragments reassemble; a second datagram interleaved is kept apart.
	big := bytes.Repeat([]byte("0123456789abcdef"), 200)
	base.ID = 2
	frags, err := wire.Fragment(base, big)
	if err != nil || len(frags) < 3 {
		t.Fatal(len(frags), err)
	}
	for i, f := range frags {
		send(t, c, srv, f)
		if i == 1 {
			d.ID = 3
			send(t, c, srv, &d)
		}
	}
	if m := recv(t, l); string(m.Data) != "hello" {
		t.Fatalf("interleaved: %q", m.Data)
	}
	if m := recv(t, l); !bytes.Equal(m.Data, big) {
		t.Fatalf("reassembled %d bytes", len(m.Data))
	}
	// A fragment without its first is dropped; an unknown unique name
	// gets DATAGRAM ERROR 0x82 with the request's ID.
	send(t, c, srv, frags[1])
	u := base
	u.ID, u.Flags, u.Dest, u.Data = 9, wire.DgmFlagFirst, wire.MustName("NOBODY", 0x20, ""), []byte("x")
	send(t, c, srv, &u)
	if e := recvDgm(t, c); e.Type != wire.DgmError || e.Code != wire.DgmErrNotPresent || e.ID != 9 {
		t.Fatalf("error datagram %+v", e)
	}
	if got := s.Counters()["reassembly_dropped"]; got != 1 {
		t.Fatalf("reassembly_dropped %d", got)
	}
	// A query request is answered from Lookup (negative here).
	send(t, c, srv, &wire.Datagram{Type: wire.DgmQueryRequest, ID: 5, SourceIP: lo, SourcePort: 138, Dest: box})
	if r := recvDgm(t, c); r.Type != wire.DgmQueryNegative || r.ID != 5 {
		t.Fatalf("query %+v", r)
	}
}

func TestReassemblyBounds(t *testing.T) {
	s, c, srv := start(t, Config{MaxPending: 2, ReassemblyTimeout: time.Hour})
	l, _ := s.Listen(box)
	base := wire.Datagram{Type: wire.DgmDirectGroup, SourceIP: lo, SourcePort: 138, Source: pc1, Dest: box}
	big := bytes.Repeat([]byte("x"), 1500)
	var lasts []*wire.Datagram
	for id := uint16(1); id <= 3; id++ {
		base.ID = id
		fs, _ := wire.Fragment(base, big)
		send(t, c, srv, fs[0])
		lasts = append(lasts, fs[1:]...)
	}
	for _, f := range lasts {
		send(t, c, srv, f)
	}
	// A barrier: a whole datagram after the fragments.
	base.ID, base.Flags, base.Data = 99, wire.DgmFlagFirst, []byte("end")
	send(t, c, srv, &base)
	var got []int
	for {
		m := recv(t, l)
		if string(m.Data) == "end" {
			break
		}
		got = append(got, len(m.Data))
	}
	if len(got) != 2 {
		t.Fatalf("delivered %v, want the 2 that fit", got)
	}
}

func TestSend(t *testing.T) {
	peer := wire.MustName("PC1", 0x03, "")
	s, c, _ := start(t, Config{Lookup: func(n wire.Name) ([]netip.Addr, bool, bool) {
		if n.Equal(peer) {
			return []netip.Addr{lo}, false, true
		}
		return nil, false, false
	}})
	<-s.Ready()
	data := bytes.Repeat([]byte("y"), 1000)
	if err := s.Send(box, peer, data); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		d := recvDgm(t, c)
		if d.Type != wire.DgmDirectUnique || !d.Dest.Equal(peer) || len(d.Data) > wire.MaxDatagram {
			t.Fatalf("%+v", d)
		}
		got = append(got, d.Data...)
		if !d.More() {
			break
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	if err := s.Send(box, wire.MustName("NOBODY", 0, ""), nil); err == nil {
		t.Fatal("send to an unknown name")
	}
}

// FuzzHandle drives the live receive path.
func FuzzHandle(f *testing.F) {
	d := wire.Datagram{Type: wire.DgmDirectUnique, Flags: wire.DgmFlagFirst | wire.DgmFlagMore, ID: 1, SourceIP: lo, SourcePort: 138, Source: pc1, Dest: box, Data: []byte("ab")}
	b, _ := d.Pack()
	f.Add(b)
	d.Flags, d.Offset = 0, 2
	b, _ = d.Pack()
	f.Add(b)
	s := New(Config{Addr: lo})
	s.Listen(box)
	f.Fuzz(func(t *testing.T, msg []byte) {
		s.handle(msg, netip.MustParseAddrPort("127.0.0.2:138"))
		if s.Counters()["panics"] != 0 {
			t.Fatal("panic")
		}
	})
}

// A server closed before its Serve ran (a restart right after a start)
// closes the socket Serve is given, so the port is free again.
func TestServeAfterCloseFreesThePort(t *testing.T) {
	s := New(Config{Addr: lo})
	s.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(pc); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	again, err := net.ListenPacket("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatalf("the port is still held: %v", err)
	}
	again.Close()
}

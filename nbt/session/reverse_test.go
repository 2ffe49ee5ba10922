package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"concierge/nbt/wire"
)

func TestParseReverse(t *testing.T) {
	r, err := ParseReverse(" 8139 = FILES#20", "")
	if err != nil || r.Port != 8139 || !r.Name.Equal(wire.MustName("FILES", 0x20, "")) || r.String() != "8139=FILES<20>" {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"FILES", "0=FILES", "139=FILES", "70000=FILES", "x=FILES", "8139=FI LES", "8139=FILES#2"} {
		if _, err := ParseReverse(bad, ""); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// startReverse runs a reverse gateway for name on loopback whose LAN
// hosts' session port is peer; resolve knows only known.
func startReverse(t *testing.T, name, known wire.Name, peer string) (string, *logSink, *ReverseGateway) {
	t.Helper()
	_, port, _ := net.SplitHostPort(peer)
	pp, _ := strconv.Atoi(port)
	sink := &logSink{ch: make(chan struct{}, 1)}
	g := NewReverse(ReverseConfig{Reverse: Reverse{Port: 1, Name: name}, Calling: boxWS, PeerPort: pp,
		Log: slog.New(slog.NewTextHandler(sink, nil)),
		Resolve: func(_ context.Context, n wire.Name) ([]netip.Addr, bool, error) {
			if n.Equal(known) {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, false, nil
			}
			return nil, false, errors.New("nobody answered")
		}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(func() {
		g.Close()
		if p := g.Info().Counters["panics"]; p != 0 {
			t.Errorf("%d panics", p)
		}
	})
	return l.Addr().String(), sink, g
}

// The NetBIOS host behind the reverse gateway is our own session service
// with a forward gateway to a TCP echo service, reached through a
// RETARGET: bytes come back unchanged both ways.
func TestReverseGatewayEcho(t *testing.T) {
	peerSrv, peer, _ := start(t, Config{Gateways: []Gateway{{Name: gwName, Addr: echoServer(t)}}})
	addr, _, g := startReverse(t, gwName, gwName, peer)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 300_000) // more than two 128 KiB messages
	rand.Read(data)
	go c.Write(data)
	got := make([]byte, len(data))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo through both gateways: %v, equal %v", err, bytes.Equal(got, data))
	}
	if s := peerSrv.Sessions(); len(s) != 1 || s[0].Calling != boxWS.String() {
		t.Fatalf("peer's sessions %+v", s)
	}
	c.(*net.TCPConn).CloseWrite()
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the client's close: %d %v", n, err)
	}
	if cnt := g.Info().Counters; cnt["established"] != 1 || cnt["bytes_in"] != uint64(len(data)) || cnt["bytes_out"] != uint64(len(data)) {
		t.Fatalf("counters %v", cnt)
	}
}

// A RETARGET is followed; an unknown name and a NEGATIVE RESPONSE close
// the client's connection with a log line.
func TestReverseGatewayRetargetAndRefusals(t *testing.T) {
	_, echoPeer, _ := start(t, Config{Gateways: []Gateway{{Name: gwName, Addr: echoServer(t)}}})
	to := netip.MustParseAddrPort(echoPeer)
	_, peer, _ := start(t, Config{Retargets: []Retarget{{Name: gwName, To: to}}})
	addr, _, _ := startReverse(t, gwName, gwName, peer)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through a retarget: %q %v", buf, err)
	}
	c.Close()

	for _, tc := range []struct {
		name wire.Name
		log  string
	}{
		{wire.MustName("NOBODY", 0x20, ""), "name not found"},
		{wire.MustName("CONCIERGE", 0x00, ""), "NEGATIVE SESSION RESPONSE 0x80"}, // held, nobody listening
	} {
		addr, sink, _ := startReverse(t, tc.name, wire.MustName("CONCIERGE", 0x00, ""), peer)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("%s: %d %v, want a close", tc.name, n, err)
		}
		c.Close()
		sink.wait(t, tc.log)
	}
}

// fakeConn is a net.Conn over a reader; writes go nowhere.
type fakeConn struct {
	io.Reader
	net.Conn
}

func (f fakeConn) Write(p []byte) (int, error)       { return len(p), nil }
func (f fakeConn) Close() error                      { return nil }
func (f fakeConn) SetDeadline(time.Time) error       { return nil }
func (f fakeConn) SetWriteDeadline(time.Time) error  { return nil }
func (f fakeConn) Read(p []byte) (int, error)        { return f.Reader.Read(p) }
func (f fakeConn) RemoteAddr() net.Addr              { return &net.TCPAddr{} }
func (f fakeConn) LocalAddr() net.Addr               { return &net.TCPAddr{} }
func (f fakeConn) SetReadDeadline(t time.Time) error { return nil }

// FuzzReverseHost feeds what a LAN host sends to the reverse gateway:
// the session response, then the session's packets.
func FuzzReverseHost(f *testing.F) {
	f.Add([]byte{wire.SessPositive, 0, 0, 0, wire.SessMessage, 0, 0, 2, 'h', 'i', wire.SessKeepAlive, 0, 0, 0})
	f.Add([]byte{wire.SessNegative, 0, 0, 1, 0x82})
	f.Add([]byte{wire.SessRetarget, 0, 0, 6, 127, 0, 0, 1, 0, 139})
	f.Add([]byte{wire.SessMessage, 1, 0xff, 0xff})
	g := NewReverse(ReverseConfig{Reverse: Reverse{Port: 1, Name: gwName}, Calling: boxWS})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		peer := fakeConn{Reader: r}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if next, err := g.request(ctx, peer, []byte{0}); err != nil || next.IsValid() {
			return
		}
		var last atomic.Int64
		for {
			h, err := g.fromPeer(peer, fakeConn{Reader: r}, &last)
			if err != nil || h.Type != wire.SessMessage && h.Type != wire.SessKeepAlive {
				return
			}
		}
	})
}

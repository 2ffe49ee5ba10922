package session

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"concierge/nbt/wire"
)

// TestGatewayBulk sends megabytes through the gateway in messages of many
// sizes, with KEEP ALIVEs between them, written in pieces that cut
// headers in two, and checks that the echo comes back byte for byte in
// SESSION MESSAGEs no longer than the limit: through the pipe the
// gateway splices between TCP sockets, with the default limit and a
// small one (several messages from one splice), and through the copy
// loop that serves any other connection.
func TestGatewayBulk(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
		wrap bool // the service connection is not a *net.TCPConn
	}{
		{"splice", 0, false},
		{"splice, small messages", 20_000, false},
		{"copy", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Gateways: []Gateway{{Name: gwName, Addr: echoServer(t)}}, MaxMessage: tc.max}
			if tc.wrap {
				var d net.Dialer
				cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := d.DialContext(ctx, network, addr)
					return struct{ net.Conn }{c}, err
				}
			}
			gatewayBulk(t, cfg)
		})
	}
}

func gatewayBulk(t *testing.T, cfg Config) {
	const total = 8 << 20
	limit := cmp.Or(cfg.MaxMessage, wire.MaxSessionLen)
	s, addr, sink := start(t, cfg)
	c, h, _ := call(t, addr, gwName)
	if h.Type != wire.SessPositive {
		t.Fatalf("response %#x", h.Type)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var stream []byte
	for p := data; len(p) > 0; {
		n := min(len(p), limit, []int{1, 3, 100, 4096, 16 << 10, 70_000, wire.MaxSessionLen}[rng.IntN(7)])
		if rng.IntN(4) == 0 {
			stream = append(stream, wire.SessKeepAlive, 0, 0, 0)
		}
		stream = append(stream, message(p[:n])...)
		p = p[n:]
	}
	werr := make(chan error, 1)
	go func() {
		for p := stream; len(p) > 0; {
			n := min(len(p), 1+rng.IntN(200_000))
			if _, err := c.Write(p[:n]); err != nil {
				werr <- err
				return
			}
			p = p[n:]
		}
		werr <- nil
	}()
	got := make([]byte, 0, total)
	var hb [wire.SessHeaderLen]byte
	for len(got) < total {
		if _, err := io.ReadFull(c, hb[:]); err != nil {
			t.Fatalf("after %d bytes: %v\n%s", len(got), err, strings.Join(sink.lines, ""))
		}
		h, err := wire.ParseSessionHeader(hb[:])
		if err != nil || h.Type != wire.SessMessage && h.Type != wire.SessKeepAlive {
			t.Fatalf("header % x: %v", hb, err)
		}
		if h.Length > limit {
			t.Fatalf("a message of %d bytes, limit %d", h.Length, limit)
		}
		n := len(got)
		got = append(got, make([]byte, h.Length)...)
		if _, err := io.ReadFull(c, got[n:]); err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echo differs")
	}
	// The session is still open: between TCP sockets its pipe counts.
	if cfg.Dial == nil && pipeBytes.Load() == 0 {
		t.Error("no pipe open: the session did not splice")
	}
	if in, out := s.Counters()["bytes_in"], s.Counters()["bytes_out"]; in != total || out != total {
		t.Errorf("counted %d in, %d out; want %d", in, out, total)
	}
}

// TestDeframer feeds the same stream to the deframer in pieces of every
// size and checks the payloads and where it stops.
func TestDeframer(t *testing.T) {
	var stream, want []byte
	for _, p := range [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{7}, 70_000), []byte("x")} {
		stream = append(stream, wire.SessKeepAlive, 0, 0, 0)
		stream = append(stream, message(p)...)
		want = append(want, p...)
	}
	for _, cut := range []int{1, 2, 3, 5, 4096, len(stream)} {
		d := deframer{max: wire.MaxSessionLen}
		var got []byte
		for p := stream; len(p) > 0; {
			n := min(cut, len(p))
			pieces, err := d.feed(nil, p[:n])
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			for _, q := range pieces {
				got = append(got, q...)
			}
			p = p[n:]
		}
		if !bytes.Equal(got, want) || d.inPacket() {
			t.Fatalf("cut %d: %d bytes, want %d; in a packet %v", cut, len(got), len(want), d.inPacket())
		}
	}
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{append(message([]byte("ab")), 0x81, 0, 0, 68), errMalformed},
		{append(message([]byte("ab")), 0x00, 0x02, 0, 0), errMalformed},
		{append(message([]byte("ab")), 0x00, 0, 0x10, 0), errTooLong},
	} {
		d := deframer{max: 1024}
		pieces, err := d.feed(nil, tc.in)
		if !errors.Is(err, tc.want) || len(pieces) != 1 || string(pieces[0]) != "ab" {
			t.Errorf("% x: %q %v, want \"ab\" and %v", tc.in, pieces, err, tc.want)
		}
	}
}

// TestPipeBudget takes pipes until the budget is spent: large ones first,
// then small ones, never more than the budget, and all of it back after.
func TestPipeBudget(t *testing.T) {
	var sizes []int
	for n := reservePipe(); n > 0; n = reservePipe() {
		sizes = append(sizes, n)
	}
	if got := pipeBytes.Load(); got > pipeBudget {
		t.Errorf("%d bytes reserved, budget %d", got, pipeBudget)
	}
	if len(sizes) == 0 || sizes[0] != pipeLarge || sizes[len(sizes)-1] != pipeSmall {
		t.Errorf("sizes %v: want %d first and %d last", sizes, pipeLarge, pipeSmall)
	}
	for _, n := range sizes {
		pipeBytes.Add(-int64(n))
	}
	if n := reservePipe(); n != pipeLarge {
		t.Errorf("after release: %d, want %d", n, pipeLarge)
	} else {
		pipeBytes.Add(-int64(n))
	}
}

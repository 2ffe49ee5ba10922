package session

import (
	"bufio"
	"io"
	"net"
	"testing"

	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

// BenchmarkGatewayThroughput compares the bytes per second a client gets
// from a TCP echo service through the session gateway (SESSION MESSAGEs
// of 16 KiB, proxied to a plain TCP connection and back) against a direct
// TCP connection to the same service: "go test -bench Gateway
// ./nbt/session". Everything runs in one process on loopback, so the
// gateway competes with the client and the echo service for the CPU.
//
// Both clients write the same 16 KiB pieces and read through the same
// 64 KiB buffer, so the two paths differ only by the gateway.
//
// The three "proxy" runs are plain TCP relays with no framing at all
// between the client and the same echo service: their bytes cross
// loopback four times, as the gateway's do, against the direct path's
// two. "proxy-copy" reads and writes through a 64 KiB buffer in user
// space both ways. "proxy-splice" is io.Copy between the two sockets,
// which the runtime does with splice(2) and no copy through user space:
// the ceiling of any relay. "proxy-half" copies the client's bytes
// through the buffer and splices the service's, as the gateway does: a
// relay that must read the caller's bytes (the gateway takes a header
// out of every message) cannot splice them, so this is the ceiling of
// the gateway's design.
func BenchmarkGatewayThroughput(b *testing.B) {
	const chunk, readBuffer = 16 << 10, 64 << 10
	echo := echoServer(b)
	s := New(Config{Server: boxName, Gateways: []Gateway{{Name: gwName, Addr: echo}},
		Holds: func(n wire.Name) bool { return n.Equal(gwName) }})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	payload := make([]byte, chunk)
	run := func(b *testing.B, c net.Conn, frame []byte, read func(int) error) {
		b.SetBytes(chunk)
		done := make(chan error, 1)
		go func() {
			for range b.N {
				if _, err := c.Write(frame); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		if err := read(b.N * chunk); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	// plain sends the payloads unframed to addr and reads the echo.
	plain := func(addr func(*testing.B) string) func(*testing.B) {
		return func(b *testing.B) {
			c, err := net.Dial("tcp", addr(b))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, readBuffer)
			run(b, c, payload, func(n int) error {
				_, err := br.Discard(n)
				return err
			})
		}
	}
	b.Run("direct", plain(func(*testing.B) string { return echo }))
	b.Run("proxy-copy", plain(func(b *testing.B) string { return tcpProxy(b, echo, false, false) }))
	b.Run("proxy-splice", plain(func(b *testing.B) string { return tcpProxy(b, echo, true, true) }))
	b.Run("proxy-half", plain(func(b *testing.B) string { return tcpProxy(b, echo, false, true) }))
	b.Run("gateway", func(b *testing.B) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		req, _ := wire.SessionRequest{Called: gwName, Calling: pcName}.Append(nil)
		c.Write(req)
		var hb [4]byte
		if _, err := io.ReadFull(c, hb[:]); err != nil || hb[0] != wire.SessPositive {
			b.Fatalf("session response %x %v", hb, err)
		}
		br := bufio.NewReaderSize(c, readBuffer)
		run(b, c, message(payload), func(n int) error {
			for n > 0 {
				if _, err := io.ReadFull(br, hb[:]); err != nil {
					return err
				}
				h, err := wire.ParseSessionHeader(hb[:])
				if err != nil {
					return err
				}
				if _, err := br.Discard(h.Length); err != nil {
					return err
				}
				if h.Type == wire.SessMessage {
					n -= h.Length
				}
			}
			return nil
		})
	})
}

// tcpProxy relays each connection it accepts to addr, byte for byte in
// both directions, and returns its own address; a direction with splice
// has the kernel move the bytes, one without copies them through a
// 64 KiB buffer.
func tcpProxy(b *testing.B, addr string, spliceIn, spliceOut bool) string {
	relay := func(dst, src net.Conn, splice bool) {
		if splice {
			io.Copy(dst, src)
			return
		}
		// Hiding ReadFrom and WriteTo keeps the runtime from splicing.
		io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, 64<<10))
	}
	return testnet.ServeLoopback(b, func(c net.Conn) {
		s, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer s.Close()
		go func() { relay(s, c, spliceIn); s.(*net.TCPConn).CloseWrite() }()
		relay(c, s, spliceOut)
	})
}

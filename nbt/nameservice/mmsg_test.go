package nameservice

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsgSocket is a UDP socket on every loopback address with IP_PKTINFO
// on, as the server's sockets are, and its raw connection.
func mmsgSocket(t *testing.T) (net.PacketConn, syscall.RawConn, uint16) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if err := ipv4.NewPacketConn(pc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		t.Fatal(err)
	}
	rc, err := pc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return pc, rc, udpAddrPort(pc.LocalAddr()).Port()
}

func udpOn(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvmmsg fills the batch slot by slot with each datagram's payload,
// source address and port and (from IP_PKTINFO) the address it was sent
// to; a batch holds what has arrived, up to its size; a datagram larger
// than its slot is marked truncated; with MSG_DONTWAIT an empty socket
// says EAGAIN.
func TestMmsgRecvBatches(t *testing.T) {
	_, rc, port := mmsgSocket(t)
	c1, c2 := udpOn(t, "127.0.0.1:0"), udpOn(t, "127.0.0.3:0")
	type dgram struct {
		from *net.UDPConn
		to   netip.Addr
		msg  string
	}
	var sent []dgram
	for i := range 6 {
		d := dgram{c1, netip.MustParseAddr("127.0.0.1"), fmt.Sprintf("datagram %d", i)}
		if i%2 == 1 {
			d = dgram{c2, netip.MustParseAddr("127.0.0.2"), fmt.Sprintf("datagram %d from the other", i)}
		}
		if _, err := d.from.WriteToUDPAddrPort([]byte(d.msg), netip.AddrPortFrom(d.to, port)); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, d)
	}
	in := newMmsgBatch(4, 64)
	next := 0
	for _, want := range []int{4, 2} { // a full batch, then a partial one
		n, err := in.recv(rc, 0)
		if err != nil || n != want {
			t.Fatalf("recv: %d datagrams, %v; want %d", n, err, want)
		}
		for i := range n {
			msg, src, dst, trunc := in.datagram(i)
			d := sent[next]
			next++
			if string(msg) != d.msg || src != udpAddrPort(d.from.LocalAddr()) || dst != d.to || trunc {
				t.Errorf("slot %d: %q from %v to %v truncated %v; want %q from %v to %v",
					i, msg, src, dst, trunc, d.msg, d.from.LocalAddr(), d.to)
			}
		}
	}
	if n, err := in.recv(rc, unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("recv on an empty socket without waiting: %d, %v; want EAGAIN", n, err)
	}
	big := make([]byte, 100)
	c1.WriteToUDPAddrPort(big, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	c1.WriteToUDPAddrPort([]byte("small"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	n, err := in.recv(rc, 0)
	if err != nil || n != 2 {
		t.Fatalf("recv: %d, %v; want 2", n, err)
	}
	if msg, _, _, trunc := in.datagram(0); !trunc || len(msg) != 64 {
		t.Errorf("a datagram larger than its slot: %d bytes, truncated %v", len(msg), trunc)
	}
	if msg, _, _, trunc := in.datagram(1); trunc || string(msg) != "small" {
		t.Errorf("the datagram after it: %q truncated %v", msg, trunc)
	}
}

// sendmmsg sends the first count slots, each to its own address and from
// the source address its IP_PKTINFO names; slots beyond count stay
// unsent.
func TestMmsgSendBatches(t *testing.T) {
	pc, rc, port := mmsgSocket(t)
	c1, c2 := udpOn(t, "127.0.0.1:0"), udpOn(t, "127.0.0.3:0")
	a1, a2 := udpAddrPort(c1.LocalAddr()), udpAddrPort(c2.LocalAddr())
	from2 := (&ipv4.ControlMessage{Src: net.IPv4(127, 0, 0, 2)}).Marshal()
	out := newMmsgBatch(4, 64)
	out.put(0, []byte("one"), a1, from2)
	out.put(1, []byte("two"), a2, nil)
	out.put(2, []byte("three"), a1, from2)
	out.put(3, []byte("never"), a2, nil)
	if n, err := out.send(rc, 3); n != 3 || err != nil {
		t.Fatalf("send: %d, %v; want 3", n, err)
	}
	// Each client then gets a marker straight from the socket: what
	// arrives before it is all the batch sent to that client.
	for _, c := range []netip.AddrPort{a1, a2} {
		if _, err := pc.WriteTo([]byte("marker"), net.UDPAddrFromAddrPort(c)); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func(c *net.UDPConn) []string {
		var got []string
		buf := make([]byte, 100)
		for {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("read: %v after %v", err, got)
			}
			if string(buf[:n]) == "marker" {
				return got
			}
			got = append(got, fmt.Sprintf("%s from %s", buf[:n], from))
		}
	}
	want1 := fmt.Sprintf("[one from 127.0.0.2:%d three from 127.0.0.2:%d]", port, port)
	if got := fmt.Sprint(readAll(c1)); got != want1 {
		t.Errorf("client 1 got %s, want %s", got, want1)
	}
	// Without IP_PKTINFO the kernel picks the source: the address the
	// client is reached by.
	want2 := fmt.Sprintf("[two from 127.0.0.1:%d]", port)
	if got := fmt.Sprint(readAll(c2)); got != want2 {
		t.Errorf("client 2 got %s, want %s", got, want2)
	}
	// The slots are reused: a second, smaller batch.
	out.put(0, []byte("again"), a2, nil)
	if n, err := out.send(rc, 1); n != 1 || err != nil {
		t.Fatalf("send: %d, %v; want 1", n, err)
	}
	pc.WriteTo([]byte("marker"), net.UDPAddrFromAddrPort(a2))
	if got := fmt.Sprint(readAll(c2)); got != fmt.Sprintf("[again from 127.0.0.1:%d]", port) {
		t.Errorf("second batch: %s", got)
	}
}

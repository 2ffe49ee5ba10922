package dhcpd

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// icmpProber sends ICMP echo requests to addresses about to be offered
// (RFC 2131 2.2, 3.1 step 2: "the server SHOULD probe the reused address
// before allocating it, e.g., with an ICMP echo request") and hands each
// reply to the probe waiting for it. One raw socket (the server runs as
// root) or, failing that, an unprivileged ping socket.
type icmpProber struct {
	conn *icmp.PacketConn
	id   int
	raw  bool

	mu      sync.Mutex
	seq     int
	waiting map[probeKey]chan struct{}
}

type probeKey struct {
	addr netip.Addr
	seq  int
}

func newICMPProber() (*icmpProber, error) {
	p := &icmpProber{id: rand.IntN(0xffff), waiting: map[probeKey]chan struct{}{}, raw: true}
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		p.raw = false
		if c, err = icmp.ListenPacket("udp4", "0.0.0.0"); err != nil {
			return nil, err
		}
	}
	p.conn = c
	go p.read()
	return p, nil
}

func (p *icmpProber) read() {
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := icmp.ParseMessage(1, buf[:n]) // protocol 1: ICMP for IPv4
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || p.raw && echo.ID != p.id { // a ping socket's ID is the kernel's
			continue
		}
		var ip net.IP
		switch a := from.(type) {
		case *net.IPAddr:
			ip = a.IP
		case *net.UDPAddr:
			ip = a.IP
		}
		key := probeKey{addr: addrOf(ip), seq: echo.Seq}
		p.mu.Lock()
		if ch := p.waiting[key]; ch != nil {
			close(ch)
			delete(p.waiting, key)
		}
		p.mu.Unlock()
	}
}

// probe reports whether a answers an echo request before ctx is done.
func (p *icmpProber) probe(ctx context.Context, a netip.Addr) bool {
	p.mu.Lock()
	p.seq = (p.seq + 1) & 0xffff
	key := probeKey{addr: a, seq: p.seq}
	ch := make(chan struct{})
	p.waiting[key] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, key)
		p.mu.Unlock()
	}()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: key.seq, Data: []byte("concierge dhcp probe")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return false
	}
	var dst net.Addr = &net.IPAddr{IP: a.AsSlice()}
	if !p.raw {
		dst = &net.UDPAddr{IP: a.AsSlice()}
	}
	if _, err := p.conn.WriteTo(b, dst); err != nil {
		return false
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *icmpProber) close() { p.conn.Close() }

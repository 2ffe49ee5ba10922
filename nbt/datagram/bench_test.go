package datagram

import (
	"context"
	"testing"
	"time"

	"concierge/nbt/wire"
)

// BenchmarkDeliver measures DIRECT_UNIQUE datagrams of 100 bytes
// delivered per second from a loopback socket to a listener on a name
// the box holds: "go test -bench Deliver ./nbt/datagram". The sender
// keeps at most 16 datagrams in flight, so that neither the socket
// buffer nor the listener's queue drops one.
func BenchmarkDeliver(b *testing.B) {
	s, c, srv := start(b, Config{Holds: func(n wire.Name) bool { return n.Equal(box) }})
	l, err := s.Listen(box)
	if err != nil {
		b.Fatal(err)
	}
	d := wire.Datagram{Type: wire.DgmDirectUnique, Flags: wire.DgmFlagFirst, ID: 1, SourceIP: lo, SourcePort: 138, Source: pc1, Dest: box, Data: make([]byte, 100)}
	pkt, err := d.Pack()
	if err != nil {
		b.Fatal(err)
	}
	const window = 16 // well under the listener's queue (DefaultQueueLen)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ResetTimer()
	got := 0
	for i := range b.N {
		if _, err := c.WriteToUDPAddrPort(pkt, srv); err != nil {
			b.Fatal(err)
		}
		if i-got >= window {
			if _, err := l.Recv(ctx); err != nil {
				b.Fatal(err)
			}
			got++
		}
	}
	for got < b.N {
		if _, err := l.Recv(ctx); err != nil {
			b.Fatal(err)
		}
		got++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
}

package datagram

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
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

// BenchmarkFanOut measures the NBDD's DIRECT_GROUP fan-out: 100-byte
// datagrams from a P-node relayed to a group of N members on loopback
// sockets, reported as datagrams/s delivered to the members (each
// relayed copy counts) and as datagrams/s taken in: "go test -bench
// FanOut ./nbt/datagram".
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			team := wire.MustName("TEAM", 0x00, "")
			var msp atomic.Pointer[[]netip.Addr]
			_, c, srv := start(b, Config{NBDD: true, Members: func(wire.Name) []netip.Addr { return *msp.Load() }})
			mc, as := members(b, n, c.LocalAddr().(*net.UDPAddr).Port)
			msp.Store(&as)
			got := make(chan struct{}, 1024)
			for _, m := range mc {
				go func() {
					buf := make([]byte, 1500)
					for {
						if _, err := m.Read(buf); err != nil {
							return
						}
						got <- struct{}{}
					}
				}()
			}
			d := wire.Datagram{Type: wire.DgmDirectGroup, Flags: wire.DgmFlagFirst | wire.DgmSNTP, ID: 1, SourceIP: lo, SourcePort: 138,
				Source: pc1, Dest: team, Data: make([]byte, 100)}
			pkt, err := d.Pack()
			if err != nil {
				b.Fatal(err)
			}
			// At most 64 copies in flight, so that no socket buffer drops one.
			window := max(1, 64/n)
			wait := func() {
				select {
				case <-got:
				case <-time.After(10 * time.Second):
					b.Fatal("relayed datagrams lost")
				}
			}
			b.ResetTimer()
			recv := 0
			for i := range b.N {
				if _, err := c.WriteToUDPAddrPort(pkt, srv); err != nil {
					b.Fatal(err)
				}
				for ; recv < (i-window)*n; recv++ {
					wait()
				}
			}
			for ; recv < b.N*n; recv++ {
				wait()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "delivered/s")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
		})
	}
}

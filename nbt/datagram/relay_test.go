package datagram

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"concierge/nbt/wire"
)

// members opens n sockets on 127.0.0.2, .3, ... at port: the hosts of a
// group the WINS table knows.
func members(t testing.TB, n, port int) ([]*net.UDPConn, []netip.Addr) {
	t.Helper()
	var cs []*net.UDPConn
	var as []netip.Addr
	for i := range n {
		a := netip.AddrFrom4([4]byte{127, 0, byte(i / 250), byte(2 + i%250)})
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(port))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
		as = append(as, a)
	}
	return cs, as
}

// silent reports whether nothing arrives on c for a moment: after a
// barrier datagram was seen elsewhere, a copy to c would have come first.
func silent(c *net.UDPConn) bool {
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1500))
	return err != nil
}

func TestNBDDRelay(t *testing.T) {
	team := wire.MustName("TEAM", 0x00, "")
	var msp atomic.Pointer[[]netip.Addr] // set once the port is known
	get := func() []netip.Addr { return *msp.Load() }
	s, c, srv := start(t, Config{NBDD: true, MaxRelay: 2,
		Members: func(n wire.Name) []netip.Addr {
			if n.Equal(team) {
				return append([]netip.Addr{lo}, get()...) // the sender is a member too
			}
			return nil
		},
		Nodes: func(max int) []netip.Addr { return get()[:min(max, len(get()))] },
		Lookup: func(n wire.Name) ([]netip.Addr, bool, bool) {
			return get(), true, n.Equal(team)
		}})
	port := c.LocalAddr().(*net.UDPAddr).Port
	mc, as := members(t, 3, port)
	msp.Store(&as)
	base := wire.Datagram{Type: wire.DgmDirectGroup, Flags: wire.DgmFlagFirst | wire.DgmSNTP, ID: 7, SourceIP: lo, SourcePort: 138,
		Source: pc1, Dest: team, Data: []byte("to the team")}
	want, _ := base.Pack()
	send(t, c, srv, &base)
	// MaxRelay 2: the first two members get the datagram as it was sent.
	buf := make([]byte, 1500)
	for _, m := range mc[:2] {
		m.SetReadDeadline(time.Now().Add(ctxT))
		n, err := m.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("member %s: %v %x", m.LocalAddr(), err, buf[:n])
		}
	}
	if !silent(mc[2]) || !silent(c) {
		t.Fatal("relayed past MaxRelay, or back to the sender")
	}
	// A B-node's group datagram, and one whose SOURCE_IP is not its
	// sender, are not relayed; a BROADCAST from a P-node goes to the
	// table's nodes; fragments are relayed one by one.
	b := base
	b.Flags = wire.DgmFlagFirst
	send(t, c, srv, &b)
	sp := base
	sp.SourceIP = netip.MustParseAddr("10.9.9.9")
	send(t, c, srv, &sp)
	bc := base
	bc.Type, bc.Dest, bc.ID = wire.DgmBroadcast, wire.MustName("*", 0, ""), 8
	wantBC, _ := bc.Pack()
	send(t, c, srv, &bc)
	mc[0].SetReadDeadline(time.Now().Add(ctxT))
	if n, err := mc[0].Read(buf); err != nil || !bytes.Equal(buf[:n], wantBC) {
		t.Fatalf("broadcast relay: %v %x", err, buf[:n])
	}
	frags, _ := wire.Fragment(wire.Datagram{Type: wire.DgmDirectGroup, Flags: wire.DgmSNTP, ID: 9, SourceIP: lo, SourcePort: 138,
		Source: pc1, Dest: team}, bytes.Repeat([]byte("z"), 1200))
	for _, f := range frags {
		send(t, c, srv, f)
	}
	for i, f := range frags {
		w, _ := f.Pack()
		mc[1].SetReadDeadline(time.Now().Add(ctxT))
		// mc[1] also got the broadcast: skip it.
		for {
			n, err := mc[1].Read(buf)
			if err != nil {
				t.Fatalf("fragment %d: %v", i, err)
			}
			if !bytes.Equal(buf[:n], wantBC) {
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("fragment %d differs", i)
				}
				break
			}
		}
	}
	cnt := s.Counters()
	if cnt["nbdd_received"] != 2+uint64(len(frags)) || cnt["nbdd_cut"] != 2+uint64(len(frags)) {
		t.Errorf("counters %v", cnt)
	}
	// DATAGRAM QUERY REQUEST for a group the table knows: positive.
	send(t, c, srv, &wire.Datagram{Type: wire.DgmQueryRequest, ID: 11, SourceIP: lo, SourcePort: 138, Dest: team})
	if r := recvDgm(t, c); r.Type != wire.DgmQueryPositive || r.ID != 11 || !r.Dest.Equal(team) {
		t.Fatalf("query %+v", r)
	}
}

// Send resolves through Config.Resolve when it is set.
func TestSendResolves(t *testing.T) {
	peer := wire.MustName("FAR", 0x03, "")
	asked := 0
	s, c, _ := start(t, Config{Resolve: func(_ context.Context, n wire.Name) ([]netip.Addr, bool, error) {
		asked++
		if n.Equal(peer) {
			return []netip.Addr{lo}, false, nil
		}
		return nil, false, fmt.Errorf("no answer")
	}})
	<-s.Ready()
	if err := s.Send(box, peer, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if d := recvDgm(t, c); string(d.Data) != "hi" {
		t.Fatalf("%+v", d)
	}
	if err := s.Send(box, wire.MustName("NOBODY", 3, ""), nil); !errors.Is(err, ErrNotFound) || asked != 2 {
		t.Fatalf("%v, asked %d", err, asked)
	}
}

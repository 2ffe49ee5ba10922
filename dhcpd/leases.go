package dhcpd

import (
	"net"
	"net/netip"
	"sort"
	"time"
)

// leaseState is where an address stands in the table.
type leaseState uint8

const (
	stateOffered  leaseState = iota // offered, waiting for the REQUEST
	stateBound                      // ACKed, until expires
	stateReleased                   // free; remembered for the client's next visit
)

func (s leaseState) String() string {
	switch s {
	case stateOffered:
		return "offered"
	case stateBound:
		return "bound"
	}
	return "free"
}

// lease is one address's record. The table holds at most one lease per
// address and one per client.
type lease struct {
	addr     netip.Addr
	client   string // clientKey of the holder
	mac      net.HardwareAddr
	hostname string
	state    leaseState
	expires  time.Time // end of the offer or lease the client was told
	// horizon is the expiry written to the lease file: a bound lease is
	// written with one lease time to spare, so that renewals within it
	// need no write, and after a crash the address stays with its
	// client at least as long as the client was told.
	horizon time.Time
}

// active reports whether the address is taken by its client at now.
func (l *lease) active(now time.Time) bool {
	return l.state != stateReleased && now.Before(l.expires)
}

// clientKey identifies a client: its client identifier (option 61, RFC
// 2132 9.14) when it sends one, else its hardware address (RFC 2131 4.2).
func clientKey(clientID []byte, mac net.HardwareAddr) string {
	if len(clientID) > 0 {
		return "id:" + string(clientID)
	}
	return "hw:" + string(mac)
}

// pool is the address range and the lease table, without I/O and without
// locks: the Server holds its mutex around every call.
type pool struct {
	subnet   netip.Prefix
	server   netip.Addr
	start    netip.Addr
	end      netip.Addr
	excluded map[netip.Addr]bool      // the box, routers: never leased
	reserved map[string]netip.Addr    // MAC (as bytes) -> fixed address
	reserve  map[netip.Addr]string    // fixed address -> MAC
	byAddr   map[netip.Addr]*lease    // every known address
	byClient map[string]*lease        // clientKey -> its lease
	declined map[netip.Addr]time.Time // address -> out of the pool until
	probing  map[string]bool          // clients whose DISCOVER is probing
}

func newPool() *pool {
	return &pool{
		byAddr:   map[netip.Addr]*lease{},
		byClient: map[string]*lease{},
		declined: map[netip.Addr]time.Time{},
		probing:  map[string]bool{},
	}
}

// inRange reports whether a is in the dynamic range.
func (p *pool) inRange(a netip.Addr) bool {
	return a.Is4() && p.start.Compare(a) <= 0 && a.Compare(p.end) <= 0
}

// usable reports whether a can be leased on this subnet at all: in the
// subnet, not its network or broadcast address, not excluded.
func (p *pool) usable(a netip.Addr) bool {
	if !a.Is4() || !p.subnet.Contains(a) || p.excluded[a] {
		return false
	}
	return a != p.subnet.Masked().Addr() && a != broadcastOf(p.subnet)
}

// available reports whether a may be given to client (with hardware
// address mac) at now.
func (p *pool) available(a netip.Addr, client string, mac net.HardwareAddr, now time.Time) bool {
	if !p.usable(a) {
		return false
	}
	if owner, ok := p.reserve[a]; ok {
		return owner == string(mac)
	}
	if !p.inRange(a) {
		return false
	}
	if until, ok := p.declined[a]; ok && now.Before(until) {
		return false
	}
	if l := p.byAddr[a]; l != nil && l.client != client && l.active(now) {
		return false
	}
	return true
}

// current returns the address the client holds or was last given, if it
// may have it again.
func (p *pool) current(client string, mac net.HardwareAddr, now time.Time) (netip.Addr, bool) {
	if a, ok := p.reserved[string(mac)]; ok {
		return a, p.usable(a)
	}
	if l := p.byClient[client]; l != nil && p.available(l.addr, client, mac, now) {
		return l.addr, true
	}
	return netip.Addr{}, false
}

// fresh picks an address the client never held: a never-used one first,
// else the one whose last lease ended longest ago. skip holds addresses
// already tried for this packet.
func (p *pool) fresh(client string, mac net.HardwareAddr, now time.Time, skip map[netip.Addr]bool) (netip.Addr, bool) {
	var oldest netip.Addr
	var oldestAt time.Time
	for a := p.start; a.IsValid() && a.Compare(p.end) <= 0; a = a.Next() {
		if skip[a] || !p.available(a, client, mac, now) {
			continue
		}
		l := p.byAddr[a]
		if l == nil {
			return a, true
		}
		if !oldest.IsValid() || l.expires.Before(oldestAt) {
			oldest, oldestAt = a, l.expires
		}
	}
	return oldest, oldest.IsValid()
}

// set records that a is the client's, in state st until expires, and
// returns the lease. A lease of another client on a, and the client's
// lease of another address, are dropped.
func (p *pool) set(a netip.Addr, client string, mac net.HardwareAddr, st leaseState, expires time.Time) *lease {
	if old := p.byClient[client]; old != nil && old.addr != a {
		delete(p.byAddr, old.addr)
	}
	l := p.byAddr[a]
	if l == nil || l.client != client {
		if l != nil && p.byClient[l.client] == l {
			delete(p.byClient, l.client)
		}
		l = &lease{addr: a, client: client}
		p.byAddr[a] = l
	}
	p.byClient[client] = l
	l.mac = append(l.mac[:0], mac...)
	l.state, l.expires = st, expires
	return l
}

// free marks the client's lease of a released, keeping the record so the
// client gets the same address next time. It reports whether the client
// held a.
func (p *pool) free(a netip.Addr, client string, now time.Time) bool {
	l := p.byAddr[a]
	if l == nil || l.client != client || l.state == stateReleased {
		return false
	}
	l.state, l.expires = stateReleased, now
	return true
}

// decline takes a out of the pool until until, dropping any lease on it.
func (p *pool) decline(a netip.Addr, until time.Time) {
	if l := p.byAddr[a]; l != nil {
		if p.byClient[l.client] == l {
			delete(p.byClient, l.client)
		}
		delete(p.byAddr, a)
	}
	p.declined[a] = until
}

// sweep forgets declines that have run out.
func (p *pool) sweep(now time.Time) {
	for a, until := range p.declined {
		if !now.Before(until) {
			delete(p.declined, a)
		}
	}
}

// size is the number of addresses in the dynamic range.
func (p *pool) size() int {
	if !p.start.IsValid() {
		return 0
	}
	return int(u32(p.end)-u32(p.start)) + 1
}

// sorted returns the leases in address order.
func (p *pool) sorted() []*lease {
	out := make([]*lease, 0, len(p.byAddr))
	for _, l := range p.byAddr {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr.Less(out[j].addr) })
	return out
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func broadcastOf(p netip.Prefix) netip.Addr {
	return fromU32(u32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}

// DefaultRange is the pool used when none is configured: the upper half
// of the subnet, without its broadcast address (.128 to .254 on a /24).
func DefaultRange(subnet netip.Prefix) (start, end netip.Addr) {
	n := u32(subnet.Masked().Addr())
	size := uint32(1) << (32 - subnet.Bits())
	if size < 4 {
		return netip.Addr{}, netip.Addr{}
	}
	return fromU32(n + size/2), fromU32(n + size - 2)
}

// Package connlimit counts a server's open connections in pools, overall,
// per client address and per client network (a /24 for IPv4, a /64 for
// IPv6), so that neither one client nor a flood from one network can take
// every session. SMTP (one pool for port 25, one for submission) and POP3
// use it.
package connlimit

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
)

// Limits bound the connections of one pool. A zero field sets no bound of
// that kind.
type Limits struct {
	Total   int // connections in the pool
	PerAddr int // from one client address
	PerNet  int // from one client network (see Network)
}

// Defaults of a pool; the settings file and the servers both take them
// from here.
const (
	DefaultTotal   = 200
	DefaultPerAddr = 20
	// DefaultPerNet leaves most of a pool to other networks when one
	// network floods it, and still lets a whole office LAN (one /24)
	// keep dozens of sessions open.
	DefaultPerNet = 50
)

// Defaults returns the default limits.
func Defaults() Limits {
	return Limits{Total: DefaultTotal, PerAddr: DefaultPerAddr, PerNet: DefaultPerNet}
}

// Why Acquire refused a connection.
var (
	ErrTotal   = errors.New("connlimit: too many connections")
	ErrPerAddr = errors.New("connlimit: too many connections from this address")
	ErrPerNet  = errors.New("connlimit: too many connections from this network")
)

// Network is the client network a connection from a is counted in: the
// /24 of an IPv4 address, the /64 of an IPv6 address (RFC 4291 2.5.1: a
// site hands out whole /64s, so an attacker has as many addresses as it
// likes inside one). The zero Addr (a net.Pipe in tests) is one network
// of its own.
func Network(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Pool counts the open connections of one pool. The zero value is ready
// to use and sets no limits.
type Pool struct {
	mu      sync.Mutex
	lim     Limits
	total   int
	perAddr map[netip.Addr]int
	perNet  map[netip.Prefix]int
}

// SetLimits sets the pool's limits. Connections already counted stay;
// new ones are held to the new limits.
func (p *Pool) SetLimits(l Limits) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lim = l
}

// Limits returns the pool's limits.
func (p *Pool) Limits() Limits {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lim
}

// Acquire counts a new connection from a, or returns ErrTotal, ErrPerNet
// or ErrPerAddr when that would exceed a limit.
func (p *Pool) Acquire(a netip.Addr) error {
	a = a.Unmap()
	n := Network(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case over(p.total, p.lim.Total):
		return ErrTotal
	case over(p.perNet[n], p.lim.PerNet):
		return ErrPerNet
	case over(p.perAddr[a], p.lim.PerAddr):
		return ErrPerAddr
	}
	if p.perAddr == nil {
		p.perAddr = map[netip.Addr]int{}
		p.perNet = map[netip.Prefix]int{}
	}
	p.total++
	p.perNet[n]++
	p.perAddr[a]++
	return nil
}

func over(n, limit int) bool { return limit > 0 && n >= limit }

// Release uncounts a connection counted by Acquire.
func (p *Pool) Release(a netip.Addr) {
	a = a.Unmap()
	n := Network(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.perNet[n]--; p.perNet[n] <= 0 {
		delete(p.perNet, n)
	}
	if p.perAddr[a]--; p.perAddr[a] <= 0 {
		delete(p.perAddr, a)
	}
}

// Len is the number of connections counted.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// RemoteIP is the client address of a TCP (or TLS over TCP) connection,
// or the zero Addr for other kinds.
func RemoteIP(c net.Conn) netip.Addr {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}

// Package connlimit counts a server's open connections, overall and per
// client address, so that one client (or a flood) cannot take every
// session. SMTP and POP3 share it.
package connlimit

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
)

// Counter counts open connections. The zero value is ready to use.
type Counter struct {
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

// Acquire counts a new connection from ip unless that would exceed max
// connections overall or maxPerIP from ip; it reports whether it did.
func (c *Counter) Acquire(ip netip.Addr, max, maxPerIP int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total >= max || c.perIP[ip] >= maxPerIP {
		return false
	}
	if c.perIP == nil {
		c.perIP = map[netip.Addr]int{}
	}
	c.total++
	c.perIP[ip]++
	return true
}

// Release uncounts a connection taken with Acquire.
func (c *Counter) Release(ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.perIP[ip]--; c.perIP[ip] <= 0 {
		delete(c.perIP, ip)
	}
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

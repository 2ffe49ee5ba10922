package nameservice

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Interface is one LAN interface the service runs on.
type Interface struct {
	Name      string
	Index     int
	Addr      netip.Addr     // the address answers are sent from
	Prefixes  []netip.Prefix // the interface's IPv4 subnets (the LAN)
	Broadcast netip.Addr
	MAC       net.HardwareAddr
}

// OnLAN reports whether a is in one of the interface's subnets.
func (i *Interface) OnLAN(a netip.Addr) bool {
	for _, p := range i.Prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Interfaces lists the IPv4 interfaces that are up and have a broadcast
// address, or the named ones (which must qualify).
func Interfaces(names []string) ([]Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("nameservice: %w", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []Interface
	for _, ni := range all {
		if len(want) > 0 && !want[ni.Name] {
			continue
		}
		ok := ni.Flags&net.FlagUp != 0 && ni.Flags&net.FlagBroadcast != 0 && ni.Flags&net.FlagLoopback == 0
		ifc := Interface{Name: ni.Name, Index: ni.Index, MAC: ni.HardwareAddr}
		addrs, _ := ni.Addrs()
		for _, a := range addrs {
			ipn, isNet := a.(*net.IPNet)
			if !isNet || ipn.IP.To4() == nil {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP.To4())
			bits, _ := ipn.Mask.Size()
			if bits >= 31 {
				continue
			}
			p := netip.PrefixFrom(ip, bits)
			ifc.Prefixes = append(ifc.Prefixes, p.Masked())
			if !ifc.Addr.IsValid() {
				ifc.Addr = ip
				ifc.Broadcast = broadcastOf(p)
			}
		}
		if !ok || !ifc.Addr.IsValid() {
			if want[ni.Name] {
				return nil, fmt.Errorf("nameservice: interface %s is down or has no IPv4 address with a broadcast address", ni.Name)
			}
			continue
		}
		delete(want, ni.Name)
		out = append(out, ifc)
	}
	for n := range want {
		return nil, fmt.Errorf("nameservice: no interface %q", n)
	}
	if len(out) == 0 {
		return nil, ErrNoInterface
	}
	return out, nil
}

func broadcastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// link is the service on one interface: its UDP socket (bound to the port
// on that device only) and its TCP listener on the interface address.
type link struct {
	ifc  Interface
	pc   net.PacketConn
	p4   *ipv4.PacketConn // with control messages; nil for Serve(pc)
	tcp  net.Listener
	port int // where requests and broadcasts are sent (137)
	src  *ipv4.ControlMessage

	once sync.Once
}

// listen opens the interface's sockets: UDP 0.0.0.0:port bound to the
// device (so broadcasts arrive and each request arrives on one socket
// only), and TCP ifaddr:port.
func listen(ifc Interface, port int, withTCP bool) (*link, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifc.Name)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("nameservice: %s: udp port %d: %w", ifc.Name, port, err)
	}
	p4 := ipv4.NewPacketConn(pc)
	if err := p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		pc.Close()
		return nil, fmt.Errorf("nameservice: %s: %w", ifc.Name, err)
	}
	l := &link{ifc: ifc, pc: pc, p4: p4, port: port, src: &ipv4.ControlMessage{Src: ifc.Addr.AsSlice(), IfIndex: ifc.Index}}
	if withTCP {
		t, err := net.Listen("tcp4", netip.AddrPortFrom(ifc.Addr, uint16(port)).String())
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("nameservice: %s: tcp port %d: %w", ifc.Name, port, err)
		}
		l.tcp = t
	}
	return l, nil
}

func (l *link) close() {
	l.once.Do(func() {
		l.pc.Close()
		if l.tcp != nil {
			l.tcp.Close()
		}
	})
}

// read returns the next datagram, its source and whether it was sent to
// a broadcast address (unknown without control messages: false).
func (l *link) read(buf []byte) (int, netip.AddrPort, bool, error) {
	if l.p4 == nil {
		n, a, err := l.pc.ReadFrom(buf)
		if err != nil {
			return 0, netip.AddrPort{}, false, err
		}
		return n, udpAddrPort(a), false, nil
	}
	n, cm, a, err := l.p4.ReadFrom(buf)
	if err != nil {
		return 0, netip.AddrPort{}, false, err
	}
	bcast := false
	if cm != nil && cm.Dst != nil {
		d, _ := netip.AddrFromSlice(cm.Dst.To4())
		bcast = d == l.ifc.Broadcast || d == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return n, udpAddrPort(a), bcast, nil
}

// send writes b to dst from the interface's address.
func (l *link) send(b []byte, dst netip.AddrPort) error {
	ua := net.UDPAddrFromAddrPort(dst)
	if l.p4 == nil {
		_, err := l.pc.WriteTo(b, ua)
		return err
	}
	_, err := l.p4.WriteTo(b, l.src, ua)
	return err
}

func udpAddrPort(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

package boot

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"concierge/internal/firmware"
)

const (
	dataPartition = firmware.DataPartition
	bootPartition = firmware.BootPartition
)

// DefaultAddress and DefaultGateway are the box's address for the first
// setup, until the admin sets its own (README: "first setup"). The kernel
// command line's concierge.ip=ADDR/PREFIX[,GATEWAY] overrides them.
var (
	DefaultAddress = netip.MustParsePrefix("192.168.1.250/24")
	DefaultGateway = netip.MustParseAddr("192.168.1.1")
)

// setupNetwork brings up lo and the first Ethernet interface with the
// address from the command line or the default.
func setupNetwork(log *slog.Logger, cmdline map[string]string) error {
	addr, gw := DefaultAddress, DefaultGateway
	if v, ok := cmdline["concierge.ip"]; ok {
		a, g, _ := strings.Cut(v, ",")
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("concierge.ip=%s: %w", v, err)
		}
		addr, gw = p, netip.Addr{}
		if g != "" {
			if gw, err = netip.ParseAddr(g); err != nil {
				return fmt.Errorf("concierge.ip=%s: %w", v, err)
			}
		}
	}
	if err := linkUp("lo"); err != nil {
		return err
	}
	ifname, err := firstEthernet()
	if err != nil {
		return err
	}
	if err := linkUp(ifname); err != nil {
		return err
	}
	idx, err := ifindex(ifname)
	if err != nil {
		return err
	}
	if err := addAddress(idx, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, ifname, err)
	}
	if gw.IsValid() {
		if err := addDefaultRoute(idx, gw); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	log.Info("boot: network up", "interface", ifname, "address", addr, "gateway", gw)
	return nil
}

// firstEthernet waits for the first interface that is not loopback.
func firstEthernet() (string, error) {
	deadline := time.Now().Add(DeviceWait)
	for {
		ents, _ := os.ReadDir("/sys/class/net")
		var names []string
		for _, e := range ents {
			if e.Name() != "lo" {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			return names[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no network interface after %v", DeviceWait)
		}
		time.Sleep(100 * time.Millisecond) // polling sysfs: the driver probes asynchronously
	}
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

func ifindex(name string) (uint32, error) {
	b, err := os.ReadFile("/sys/class/net/" + name + "/ifindex")
	if err != nil {
		return 0, err
	}
	var i uint32
	_, err = fmt.Sscan(string(b), &i)
	return i, err
}

// addAddress adds an IPv4 address with its broadcast (RTM_NEWADDR).
func addAddress(idx uint32, p netip.Prefix) error {
	a := p.Addr().As4()
	bits := p.Bits()
	mask := ^uint32(0) >> bits
	brd := binary.BigEndian.Uint32(a[:]) | mask
	var b4 [4]byte
	binary.BigEndian.PutUint32(b4[:], brd)
	body := []byte{unix.AF_INET, byte(bits), 0, unix.RT_SCOPE_UNIVERSE, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(body[4:], idx)
	body = rtattr(body, unix.IFA_LOCAL, a[:])
	body = rtattr(body, unix.IFA_ADDRESS, a[:])
	body = rtattr(body, unix.IFA_BROADCAST, b4[:])
	return netlink(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

// addDefaultRoute adds the default route via gw (RTM_NEWROUTE).
func addDefaultRoute(idx uint32, gw netip.Addr) error {
	g := gw.As4()
	body := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	body = rtattr(body, unix.RTA_GATEWAY, g[:])
	var oif [4]byte
	binary.NativeEndian.PutUint32(oif[:], idx)
	body = rtattr(body, unix.RTA_OIF, oif[:])
	return netlink(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

func rtattr(b []byte, typ uint16, data []byte) []byte {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// netlink sends one rtnetlink request and reads its acknowledgement.
func netlink(typ, flags uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	if n < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return fmt.Errorf("netlink: unexpected reply")
	}
	if e := int32(binary.NativeEndian.Uint32(buf[unix.NLMSG_HDRLEN:])); e != 0 {
		return unix.Errno(-e)
	}
	return nil
}

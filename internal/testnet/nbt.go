package testnet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// This file holds the NetBIOS peers and tools: sockets opened inside a
// namespace from the test process itself, nmblookup's client
// configuration, Samba's nmbd, and tshark captures.

// InNS runs fn on an OS thread switched into the host's network namespace;
// sockets fn opens stay in that namespace after it returns.
func (h *Host) InNS(fn func() error) error {
	return InNamespace(h.NS, fn)
}

// InNamespace runs fn on an OS thread switched into the named network
// namespace (ip netns); sockets fn opens stay there after it returns.
func InNamespace(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket in the host's namespace on its address and
// port (0: any port), with broadcasts allowed. It is closed when the test
// ends.
func (h *Host) ListenUDP(port int) *net.UDPConn {
	h.lan.t.Helper()
	var c *net.UDPConn
	err := h.InNS(func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: h.Addr.AsSlice(), Port: port})
		if err != nil {
			return err
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
	})
	if err != nil {
		h.lan.t.Fatalf("udp socket in %s: %v", h.Name, err)
	}
	h.lan.t.Cleanup(func() { c.Close() })
	return c
}

// ListenBroadcastUDP opens a UDP socket in the host's namespace on
// 0.0.0.0:port, so it receives broadcasts as well.
func (h *Host) ListenBroadcastUDP(port int) *net.UDPConn {
	h.lan.t.Helper()
	var c *net.UDPConn
	err := h.InNS(func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		if err != nil {
			return err
		}
		rc, _ := c.SyscallConn()
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
	})
	if err != nil {
		h.lan.t.Fatalf("udp socket in %s: %v", h.Name, err)
	}
	h.lan.t.Cleanup(func() { c.Close() })
	return c
}

// DialTCP connects from the host's namespace.
func (h *Host) DialTCP(addr string) net.Conn {
	h.lan.t.Helper()
	var c net.Conn
	err := h.InNS(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	})
	if err != nil {
		h.lan.t.Fatalf("dial %s from %s: %v", addr, h.Name, err)
	}
	h.lan.t.Cleanup(func() { c.Close() })
	return c
}

// NmbClientConf writes an smb.conf for nmblookup on the host (its LAN
// interface, broadcast resolution) and returns its path.
func (h *Host) NmbClientConf() string {
	h.lan.t.Helper()
	dir := h.lan.t.TempDir()
	p := filepath.Join(dir, "client.conf")
	conf := fmt.Sprintf("[global]\n interfaces = %s\n bind interfaces only = yes\n name resolve order = bcast\n"+
		" lock directory = %[2]s\n state directory = %[2]s\n cache directory = %[2]s\n private dir = %[2]s\n",
		h.IF, dir)
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		h.lan.t.Fatal(err)
	}
	return p
}

// Nmblookup runs nmblookup in the namespace with the host's client
// configuration and returns its output and error.
func (h *Host) Nmblookup(args ...string) (string, error) {
	return h.Output("nmblookup", append([]string{"-s", h.NmbClientConf()}, args...)...)
}

// StartNmbd runs Samba's nmbd in the namespace under the NetBIOS name
// name, with extra smb.conf lines (e.g. "wins server = 10.77.5.1"), and
// waits until it listens on 137/udp.
func (h *Host) StartNmbd(name, workgroup string, extra ...string) *Proc {
	h.lan.t.Helper()
	dir := h.lan.t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\n netbios name = %s\n workgroup = %s\n interfaces = %s\n bind interfaces only = yes\n", name, workgroup, h.IF)
	for _, d := range []string{"lock directory", "state directory", "cache directory", "pid directory", "private dir", "ncalrpc dir"} {
		sub := filepath.Join(dir, strings.ReplaceAll(d, " ", "_"))
		os.MkdirAll(sub, 0o755)
		fmt.Fprintf(&b, " %s = %s\n", d, sub)
	}
	fmt.Fprintf(&b, " log file = %s/log.nmbd\n log level = 2\n local master = no\n domain master = no\n preferred master = no\n", dir)
	for _, e := range extra {
		fmt.Fprintf(&b, " %s\n", e)
	}
	conf := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		h.lan.t.Fatal(err)
	}
	p := h.Start("/usr/sbin/nmbd", "-F", "--no-process-group", "-d", "2", "--debug-stdout", "-s", conf)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := h.Output("ss", "-Hlun", "sport = :137")
		if strings.Contains(out, h.Addr.String()) {
			return p
		}
		if p.Exited() || time.Now().After(deadline) {
			h.lan.t.Fatalf("nmbd did not start:\n%s", p.Out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Capture is a tshark capture running on a host's LAN interface.
type Capture struct {
	h    *Host
	file string
	proc *Proc
}

// markerPort is the UDP port (discard) of the marker broadcasts that
// bound a capture: Capture waits for one in the file, so the capture is
// attached, and Stop waits for another, so every packet the interface
// carried before it is in the file too. Reads leave them out.
const markerPort = 9

// Capture starts tshark on the host's interface with a capture filter
// (e.g. "port 137") and returns once it captures: tshark says "Capturing
// on" before its capture is attached, so Capture waits for a marker to
// reach the file.
func (h *Host) Capture(filter string) *Capture {
	h.lan.t.Helper()
	file := filepath.Join(h.lan.t.TempDir(), "capture.pcapng")
	filter = fmt.Sprintf("(%s) or (udp dst port %d and dst host %s)", filter, markerPort, h.lan.Broadcast())
	c := &Capture{h: h, file: file, proc: h.Start("tshark", "-q", "-i", h.IF, "-f", filter, "-w", file)}
	if err := c.mark(); err != nil {
		h.lan.t.Fatalf("tshark did not start: %v", err)
	}
	return c
}

// Stop ends the capture once the packets sent before it have reached the
// file, then returns tshark's one-line summaries of the packets matching
// the display filter, and of all packets.
func (c *Capture) Stop(display string) (matched string, all string) {
	c.h.lan.t.Helper()
	if err := c.mark(); err != nil {
		c.h.lan.t.Errorf("capture on %s: %v", c.h.Name, err)
	}
	c.proc.Signal(unix.SIGINT)
	c.proc.Wait(10 * time.Second)
	return c.Read(display), c.Read("")
}

// mark broadcasts a datagram with a nonce on the capture's interface,
// again every quarter second in case one is lost (a link just set up
// drops what it is given until its queue is attached), and waits until
// tshark has written one to the file. The datagram is built by hand and
// sent on a packet socket, so it goes out whatever addresses the
// interface has at the time, even none.
func (c *Capture) mark() error {
	nonce := fmt.Appendf(nil, "end of capture %d %d", os.Getpid(), time.Now().UnixNano())
	frame := markerDatagram(c.h.Addr, c.h.lan.Broadcast(), nonce)
	var fd, ifindex int
	err := c.h.InNS(func() error {
		ifi, err := net.InterfaceByName(c.h.IF)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("a socket for the marker: %v", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	// The marker lands after what the file holds now: read only the rest
	// (a flood's capture runs to megabytes).
	var from int64
	if fi, err := os.Stat(c.file); err == nil {
		from = fi.Size()
	}
	var sent time.Time
	if !WaitFor(15*time.Second, func() bool {
		if time.Since(sent) > 250*time.Millisecond {
			unix.Sendto(fd, frame, 0, to)
			sent = time.Now()
		}
		f, err := os.Open(c.file)
		if err != nil {
			return false
		}
		defer f.Close()
		b, _ := io.ReadAll(io.NewSectionReader(f, from, 1<<62))
		return bytes.Contains(b, nonce)
	}) {
		return fmt.Errorf("the marker did not reach %s:\n%s", c.file, c.proc.Out.String())
	}
	return nil
}

// markerDatagram is an IPv4 UDP datagram from src to dst, both on
// markerPort (UDP's checksum left out, as IPv4 allows).
func markerDatagram(src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 28, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(28+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], markerPort)
	binary.BigEndian.PutUint16(b[22:], markerPort)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	return append(b, payload...)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Flagged is the display filter for what Wireshark finds wrong in the
// packets src sent: a malformed packet, or an expert warning or error.
// TCP's own sequence analysis is left out: a retransmission, a duplicate
// or D-SACK acknowledgement, a full window, an ACK of a segment the
// capture missed are about the kernel's TCP and the capture, not about
// the NetBIOS the sender framed; on a busy veth pair they come and go.
func Flagged(src netip.Addr) string {
	return fmt.Sprintf("ip.src == %s && (_ws.malformed || (_ws.expert.severity >= 0x600000 && !tcp.analysis.flags && !tcp.options.sack.dsack))", src)
}

// Read returns tshark's one-line summaries of the captured packets that
// match the display filter (all of them for ""); use it after Stop.
func (c *Capture) Read(display string) string {
	t := c.h.lan.t
	t.Helper()
	filter := fmt.Sprintf("!(udp.dstport == %d && ip.dst == %s)", markerPort, c.h.lan.Broadcast())
	if display != "" {
		filter = "(" + display + ") && " + filter
	}
	args := []string{"-r", c.file, "-Y", filter}
	cmd := c.h.Command("tshark", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// Join attaches host h, which lives on another LAN, to this LAN too: a
// second interface ifname with address prefix.n and a broadcast address.
func (l *LAN) Join(h *Host, ifname string, n int) netip.Addr {
	l.t.Helper()
	a := l.prefix.Addr().As4()
	a[3] = byte(n)
	addr := netip.AddrFrom4(a)
	l.mu.Lock()
	port := fmt.Sprintf("j%d", len(l.hosts))
	l.hosts = append(l.hosts, &Host{lan: l, Name: h.Name + "-" + ifname, NS: h.NS, Addr: addr, IF: ifname})
	l.mu.Unlock()
	run(l.t, "ip", "link", "add", ifname, "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.sw)
	run(l.t, "ip", "-n", l.sw, "link", "set", port, "master", "br0", "up")
	run(l.t, "ip", "-n", h.NS, "addr", "add", fmt.Sprintf("%s/%d", addr, l.prefix.Bits()), "brd", "+", "dev", ifname)
	run(l.t, "ip", "-n", h.NS, "link", "set", ifname, "up")
	return addr
}

// NBTNames is "concierge nbt names" read back.
type NBTNames struct {
	Interfaces []string             // "IF ADDR broadcast B MAC M"
	Own        map[string][2]string // name → type, state
	WINS       map[string][]string  // name → type, owners..., ttl left
	Counters   map[string]int
	Unplaced   []string // lines that fit no section
}

// ParseNBTNames reads the four sections of "concierge nbt names": the
// interface lines, the box's own names (NAME), the WINS table (a group's
// further owners on the lines under its first) and the counters.
func ParseNBTNames(out string) NBTNames {
	n := NBTNames{Own: map[string][2]string{}, WINS: map[string][]string{}, Counters: map[string]int{}}
	section, last := "", ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "interface":
			n.Interfaces = append(n.Interfaces, strings.Join(f[1:], " "))
			continue
		case f[0] == "NAME" || f[0] == "COUNTER" || strings.HasPrefix(l, "WINS TABLE"):
			section = f[0]
			continue
		}
		switch {
		case section == "NAME" && len(f) >= 3:
			n.Own[f[0]] = [2]string{f[1], strings.Join(f[2:], " ")}
		case section == "WINS" && len(f) == 4:
			last = f[0]
			n.WINS[last] = []string{f[1], f[2], f[3]}
		case section == "WINS" && len(f) == 1 && last != "":
			w := n.WINS[last]
			n.WINS[last] = append(w[:len(w)-1], f[0], w[len(w)-1])
		case section == "COUNTER" && len(f) >= 2:
			if v, err := strconv.Atoi(f[len(f)-1]); err == nil {
				n.Counters[strings.Join(f[:len(f)-1], " ")] = v
				continue
			}
			n.Unplaced = append(n.Unplaced, l)
		default:
			n.Unplaced = append(n.Unplaced, l)
		}
	}
	return n
}

// Owners are the addresses the WINS table lists for name.
func (n NBTNames) Owners(name string) []string {
	if w := n.WINS[name]; len(w) >= 3 {
		return w[1 : len(w)-1]
	}
	return nil
}

// WaitNamesClaimed waits for the count-th names-claimed event of the
// control API (one per start of the name service: the process start, and
// each restart on a settings or interface change), through "concierge
// wait names-claimed", and fails the test after 20s.
func (b *Box) WaitNamesClaimed(count int) {
	b.t.Helper()
	b.waitSocket()
	out, err := b.CLITry("", "wait", "names-claimed", "--after", strconv.Itoa(count-1), "--timeout", "20s")
	if err != nil {
		b.t.Fatalf("the box did not claim its names (%d times): %v %s\n%s", count, err, out, b.Proc.Out.String())
	}
}

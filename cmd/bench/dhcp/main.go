// Command dhcp benchmarks the LAN DHCP server side by side with dnsmasq's:
// each server runs in a namespace of its own, joined by a veth pair to a
// client namespace where a Go load generator (raw dhcpv4 packets on one
// UDP socket, broadcast flag set, so every reply is a broadcast it can
// read without a raw socket) plays many clients with distinct MACs.
//
//  1. Leases per second: -clients clients each run DISCOVER, OFFER,
//     REQUEST, ACK, -workers at a time, against an empty lease table.
//  2. Lease file writes under churn: for -churn, -rate operations per
//     second, each one of: a client reboots (INIT-REBOOT REQUEST), a client
//     releases and leases again, a new client arrives. Writes are counted
//     with inotify (a rename into place, or a burst of modifications of
//     the file within 2 ms, is one write) and given per minute.
//
// Both servers probe a new address with an ICMP echo before offering it
// (their default); the figures include that wait.
//
// Run as root: go run ./cmd/bench/dhcp [-clients 500] [-churn 30s]
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"concierge/internal/measure"
	"concierge/internal/testnet"
)

var (
	clients = flag.Int("clients", 500, "clients (distinct MACs) in the lease run")
	workers = flag.Int("workers", 32, "clients leasing at once")
	churn   = flag.Duration("churn", 30*time.Second, "length of the churn run")
	rate    = flag.Int("rate", 20, "churn operations per second")
	binFlag = flag.String("bin", "", "concierge binary (default: build ./cmd/concierge)")
	noProbe = flag.Bool("noprobe", false, "both servers offer without the ICMP probe (dnsmasq --no-ping, dhcp.probe_timeout 0)")
)

const (
	srvAddr    = "10.77.253.1/16"
	cliAddr    = "10.77.253.2/16"
	rangeStart = "10.77.1.0"
	rangeEnd   = "10.77.16.255"
	replyWait  = 3 * time.Second
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dhcp bench:", err)
		os.Exit(1)
	}
}

func probeTimeout() string {
	if *noProbe {
		return "0s"
	}
	return "500ms"
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %v: %v %s", args, err, out)
	}
	return nil
}

// pair makes a server and a client namespace joined by a veth pair.
func pair(srv, cli string) error {
	for _, c := range [][]string{
		{"netns", "add", srv}, {"netns", "add", cli},
		{"link", "add", "eth0", "netns", srv, "type", "veth", "peer", "name", "eth0", "netns", cli},
		{"-n", srv, "addr", "add", srvAddr, "brd", "+", "dev", "eth0"},
		{"-n", cli, "addr", "add", cliAddr, "brd", "+", "dev", "eth0"},
		{"-n", srv, "link", "set", "eth0", "up"}, {"-n", cli, "link", "set", "eth0", "up"},
		{"-n", srv, "link", "set", "lo", "up"}, {"-n", cli, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(c...); err != nil {
			return err
		}
	}
	return nil
}

type server struct {
	name  string
	cli   string // client namespace
	cmd   *exec.Cmd
	lease string // lease file
}

func run() error {
	work, err := os.MkdirTemp("", "dhcp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := *binFlag
	if bin == "" {
		bin = filepath.Join(work, "concierge")
		if err := measure.BuildConcierge(bin); err != nil {
			return err
		}
	}
	id := fmt.Sprintf("dhb%d", os.Getpid()%100000)
	names := []string{id + "box", id + "bcli", id + "dnm", id + "dcli"}
	cleanup := func() { testnet.DeleteNamespaces(names...) }
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; cleanup(); os.Exit(1) }()
	if err := pair(names[0], names[1]); err != nil {
		return err
	}
	if err := pair(names[2], names[3]); err != nil {
		return err
	}

	data := filepath.Join(work, "box")
	os.MkdirAll(data, 0o700)
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"pop3.listen", ""}, {"pop3.tls_listen", ""}, {"hostname", "bench.example.test"}, {"nbt.enabled", "false"},
		{"dhcp.enabled", "true"}, {"dhcp.interface", "eth0"}, {"dhcp.range_start", rangeStart},
		{"dhcp.range_end", rangeEnd}, {"dhcp.lease_time", "1h"}, {"dhcp.probe_timeout", probeTimeout()},
	} {
		if out, err := exec.Command(bin, "-data", data, "config", "set", kv[0], kv[1]).CombinedOutput(); err != nil {
			return fmt.Errorf("config set %s: %v %s", kv[0], err, out)
		}
	}
	box := &server{name: "concierge", cli: names[1], lease: filepath.Join(data, "dhcp-leases.json"),
		cmd: exec.Command("ip", "netns", "exec", names[0], bin, "-data", data, "serve")}
	dnmDir := filepath.Join(work, "dnsmasq")
	os.MkdirAll(dnmDir, 0o755)
	dnm := &server{name: "dnsmasq", cli: names[3], lease: filepath.Join(dnmDir, "dnsmasq.leases"),
		cmd: exec.Command("ip", "netns", "exec", names[2], "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
			"--port=0", "--no-resolv", "--no-hosts", "--bind-interfaces", "--interface=eth0",
			"--dhcp-range="+rangeStart+","+rangeEnd+",1h", "--dhcp-lease-max=10000",
			"--dhcp-leasefile="+filepath.Join(dnmDir, "dnsmasq.leases"))}
	if *noProbe {
		dnm.cmd.Args = append(dnm.cmd.Args, "--no-ping")
	}
	fmt.Printf("DHCP: %d clients (distinct MACs), %d leasing at once, then %v of churn at %d operations/s; probe before offer: %v\n",
		*clients, *workers, *churn, *rate, !*noProbe)
	for _, s := range []*server{box, dnm} {
		if err := s.cmd.Start(); err != nil {
			return err
		}
		defer func() { s.cmd.Process.Signal(syscall.SIGTERM); s.cmd.Wait() }()
	}
	for _, s := range []*server{box, dnm} {
		if err := bench(s); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// gen is the load generator: one UDP socket on port 68 in the client
// namespace; replies are matched to their requests by transaction ID.
type gen struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	lost    atomic.Int64 // requests sent again after no reply
	naks    atomic.Int64 // DORAs started again after a NAK
}

func newGen(ns string) (*gen, error) {
	g := &gen{waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	err := testnet.InNamespace(ns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		if err != nil {
			return err
		}
		rc, _ := c.SyscallConn()
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			unix.BindToDevice(int(fd), "eth0") // 255.255.255.255 has no route otherwise
		})
		g.conn = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	go g.read()
	return g, nil
}

func (g *gen) read() {
	buf := make([]byte, 1500)
	for {
		n, _, err := g.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		g.mu.Lock()
		ch := g.waiting[m.TransactionID]
		delete(g.waiting, m.TransactionID)
		g.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

var bcast = &net.UDPAddr{IP: net.IPv4bcast, Port: 67}

// ask sends m (broadcast) and waits for the reply, trying up to 3 times.
func (g *gen) ask(m *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	m.SetBroadcast()
	for try := 0; try < 3; try++ {
		ch := make(chan *dhcpv4.DHCPv4, 1)
		g.mu.Lock()
		g.waiting[m.TransactionID] = ch
		g.mu.Unlock()
		if _, err := g.conn.WriteTo(m.ToBytes(), bcast); err != nil {
			return nil, err
		}
		select {
		case r := <-ch:
			return r, nil
		case <-time.After(replyWait):
			g.lost.Add(1)
		}
	}
	g.mu.Lock()
	delete(g.waiting, m.TransactionID)
	g.mu.Unlock()
	return nil, errors.New("no reply")
}

func (g *gen) tell(m *dhcpv4.DHCPv4) error {
	_, err := g.conn.WriteTo(m.ToBytes(), bcast)
	return err
}

// macSeed makes the MACs random-looking but distinct: dnsmasq picks an
// address by a hash of the MAC, and consecutive MACs would be unfair to it.
var macSeed = rand.Uint32()

func macOf(i int) net.HardwareAddr {
	v := uint32(i)*2654435761 ^ macSeed // distinct for distinct i
	return net.HardwareAddr{0x02, 0xbe, byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// dora leases an address for mac; after a NAK it starts again, as a
// client does (RFC 2131 3.1 step 4), up to 3 times.
func (g *gen) dora(mac net.HardwareAddr) (ip net.IP, err error) {
	for try := 0; try < 3; try++ {
		if ip, err = g.dora1(mac); err == nil || !errors.Is(err, errNAK) {
			return ip, err
		}
		g.naks.Add(1)
	}
	return nil, err
}

var errNAK = errors.New("NAK")

func (g *gen) dora1(mac net.HardwareAddr) (net.IP, error) {
	d, _ := dhcpv4.NewDiscovery(mac)
	offer, err := g.ask(d)
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		return nil, fmt.Errorf("discover: %v %v", err, offer)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	ack, err := g.ask(req)
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		if ack != nil && ack.MessageType() == dhcpv4.MessageTypeNak {
			return nil, fmt.Errorf("request for %s: %w %q", offer.YourIPAddr, errNAK, ack.Message())
		}
		return nil, fmt.Errorf("request: %v", err)
	}
	return ack.YourIPAddr, nil
}

// reboot asks for mac's address again as a rebooting client does.
func (g *gen) reboot(mac net.HardwareAddr, ip net.IP) error {
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))
	ack, err := g.ask(m)
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		return fmt.Errorf("init-reboot: %v %v", err, ack)
	}
	return nil
}

func (g *gen) release(mac net.HardwareAddr, ip net.IP, server net.IP) error {
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(ip), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
	return g.tell(m)
}

// writeCounter counts writes of a file with inotify on its directory.
type writeCounter struct {
	fd     int
	writes atomic.Int64
}

func countWrites(file string) (*writeCounter, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(file), unix.IN_MODIFY|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		return nil, err
	}
	w := &writeCounter{fd: fd}
	base := filepath.Base(file)
	go func() {
		buf := make([]byte, 64<<10)
		var last time.Time
		for {
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafePointer(&buf[off]))
				nameb := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				off += unix.SizeofInotifyEvent + int(ev.Len)
				name := string(trimNul(nameb))
				switch {
				case name == base && ev.Mask&unix.IN_MOVED_TO != 0:
					w.writes.Add(1) // a whole new file renamed into place
				case name == base && ev.Mask&unix.IN_MODIFY != 0:
					// A rewrite in place (truncate, then a few
					// buffered writes) takes well under 2 ms.
					if now := time.Now(); now.Sub(last) > 2*time.Millisecond {
						w.writes.Add(1)
						last = now
					}
				}
			}
		}
	}()
	return w, nil
}

func trimNul(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

func bench(s *server) error {
	g, err := newGen(s.cli)
	if err != nil {
		return err
	}
	defer g.conn.Close()
	// Wait until the server answers.
	for try := 0; ; try++ {
		_, err := g.dora(macOf(0xffffff))
		if err == nil {
			break
		}
		if try == 3 {
			return fmt.Errorf("not answering: %w", err)
		}
	}
	g.lost.Store(0)
	g.naks.Store(0)
	os.MkdirAll(filepath.Dir(s.lease), 0o755)
	wc, err := countWrites(s.lease)
	if err != nil {
		return err
	}
	defer unix.Close(wc.fd)

	// 1. Leases per second.
	ips := make([]net.IP, *clients)
	next := atomic.Int64{}
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *clients {
					return
				}
				ip, err := g.dora(macOf(i))
				if err != nil {
					if failed.Add(1) == 1 {
						fmt.Printf("%-10s first failure: %v\n", s.name, err)
					}
					continue
				}
				ips[i] = ip
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	seen := map[string]bool{}
	dup := 0
	for _, ip := range ips {
		if ip != nil {
			if seen[ip.String()] {
				dup++
			}
			seen[ip.String()] = true
		}
	}
	leaseWrites := wc.writes.Load()
	fmt.Printf("%-10s leases: %d in %.2fs = %.0f leases/s (failed %d, retransmissions %d, restarts after NAK %d, duplicates %d), lease file writes %d\n",
		s.name, len(seen), el.Seconds(), float64(len(seen))/el.Seconds(), failed.Load(), g.lost.Load(), g.naks.Load(), dup, leaseWrites)

	// 2. Churn.
	server := net.ParseIP("10.77.253.1")
	newID := *clients
	var ops, errs int
	w0 := wc.writes.Load()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	end := time.Now().Add(*churn)
	for time.Now().Before(end) {
		<-tick.C
		i := rand.IntN(*clients)
		if ips[i] == nil {
			continue
		}
		var err error
		switch r := rand.IntN(10); {
		case r < 6: // reboot
			err = g.reboot(macOf(i), ips[i])
		case r < 9: // release and lease again
			g.release(macOf(i), ips[i], server)
			ips[i], err = g.dora(macOf(i))
		default: // a new client
			_, err = g.dora(macOf(newID))
			newID++
		}
		ops++
		if err != nil {
			errs++
		}
	}
	time.Sleep(500 * time.Millisecond) // the last group commit
	w := wc.writes.Load() - w0
	fmt.Printf("%-10s churn: %d operations (%d failed) in %v: %d lease file writes = %.0f writes/min\n",
		s.name, ops, errs, *churn, w, float64(w)/churn.Minutes())
	return nil
}

// Command nbt benchmarks unicast NetBIOS name queries: a closed-loop load
// generator in a client namespace asks for the server's own name with 1, 4
// and 16 concurrent requesters for 10 s each, against concierge (the real
// binary, only the NetBIOS service on) and against Samba's nmbd, each
// started by the benchmark in a server namespace on the same bridged LAN.
// It prints queries per second, p50 and p99 latency, the server's own CPU
// time per answered query (utime+stime from /proc/PID/stat over the run,
// divided by the answers), the ratios, and the
// memory the NetBIOS part adds to concierge (RSS with nbt on, peak under
// load, minus RSS with nbt off) next to nmbd's.
//
// Run as root: go run ./cmd/bench/nbt [-duration 10s] [-levels 1,4,16]
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"concierge/internal/measure"
	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

var (
	duration = flag.Duration("duration", 10*time.Second, "load per concurrency level")
	levelsF  = flag.String("levels", "1,4,16", "concurrent requesters")
	timeout  = flag.Duration("timeout", 200*time.Millisecond, "a query unanswered this long counts as lost")
	rounds   = flag.Int("rounds", 3, "rounds, alternating the servers at each level; the median is printed")
	spin     = flag.Bool("spin", false, "busy-poll in the load generator instead of sleeping until an answer comes")
	perSock  = flag.Bool("sockets", false, "one socket and goroutine per requester, blocking reads (like separate clients)")
	binFlag  = flag.String("bin", "", "concierge binary to run (default: build ./cmd/concierge)")
	ceiling  = flag.Bool("ceiling", false, "replace nmbd by ./cmd/bench/nbt/ceiling, which echoes each query back: the most any server gets here")
	nmbdWINS = flag.Bool("nmbd-wins", false, "run nmbd as a WINS server (wins support = yes)")
	vsFlag   = flag.String("vs", "", "run this second concierge binary in nmbd's place (to compare two builds on the same runs)")
)

const (
	prefix   = "nbtb"
	boxAddr  = "10.77.250.1"
	cliAddr  = "10.77.250.2"
	nmbdAddr = "10.77.250.3"
	netBits  = "/24"
	boxName  = "BENCHBOX"
	nmbdName = "BENCHNMBD"
	workgrp  = "BENCHGRP"
	basePort = 137
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nbt bench:", err)
		os.Exit(1)
	}
}

type result struct {
	qps       float64
	p50, p99  time.Duration
	lost, sum int
	srvCPU    float64       // server CPU time / wall time
	genCPU    float64       // load generator CPU time / wall time
	cpuPerQ   time.Duration // server CPU time (utime+stime) / answered queries
}

// cpu returns the user+system CPU time of a process in seconds.
func cpu(pid int) float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.Atoi(f[11])
			k, _ := strconv.Atoi(f[12])
			return float64(u+k) / 100 // USER_HZ
		}
	}
	return 0
}

// measureLoad runs load and accounts the CPU of the server and of this process.
func measureLoad(cli string, n int, tg *target) (result, error) {
	s0, g0, t0 := cpu(tg.pid), cpu(os.Getpid()), time.Now()
	r, err := load(cli, n, tg)
	el := time.Since(t0).Seconds()
	srv := cpu(tg.pid) - s0
	r.srvCPU, r.genCPU = srv/el, (cpu(os.Getpid())-g0)/el
	if answered := r.sum - r.lost; answered > 0 {
		r.cpuPerQ = time.Duration(srv / float64(answered) * float64(time.Second))
	}
	return r, err
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "/usr/sbin/nmbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s: %v (make test-deps installs samba)", tool, err)
		}
	}
	var levels []int
	for _, f := range strings.Split(*levelsF, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 32 {
			return fmt.Errorf("-levels: %q (1 to 32)", f)
		}
		levels = append(levels, n)
	}
	work, err := os.MkdirTemp("", "nbt-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := *binFlag
	if bin == "" {
		bin = filepath.Join(work, "concierge")
		build := exec.Command("go", "build", "-o", bin, "./cmd/concierge")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}

	id := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	sw, boxNS, nmbdNS, cli := id+"sw", id+"box", id+"nmb", id+"cli"
	cleanup := func() { testnet.DeleteNamespaces(boxNS, nmbdNS, cli, sw) }
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; cleanup(); os.Exit(1) }()
	if err := lanSetup(sw, map[string]string{boxNS: boxAddr, nmbdNS: nmbdAddr, cli: cliAddr}); err != nil {
		return err
	}

	fmt.Printf("NetBIOS unicast name queries: closed loop from a client namespace, %v per level and server, %d rounds alternating, medians (GOMAXPROCS %d, %d CPUs, generator spins: %v)\n",
		*duration, *rounds, runtime.GOMAXPROCS(0), runtime.NumCPU(), *spin)

	// concierge's RSS with nbt off, then both servers up side by side
	// (each on its own host, under its own name); only the one under
	// load does any work.
	base, err := startConcierge(bin, filepath.Join(work, "off"), boxNS, boxName, false)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	rssOff := rss(base.Process.Pid)
	stop(base)
	box, err := startConcierge(bin, filepath.Join(work, "on"), boxNS, boxName, true)
	if err != nil {
		return err
	}
	defer stop(box)
	var nmbd *exec.Cmd
	anchor := "nmbd"
	switch {
	case *vsFlag != "":
		anchor = "vs"
		nmbd, err = startConcierge(*vsFlag, filepath.Join(work, "vs"), nmbdNS, nmbdName, true)
	case *ceiling:
		anchor = "ceiling"
		cb := filepath.Join(work, "ceiling")
		if out, err := exec.Command("go", "build", "-o", cb, "./cmd/bench/nbt/ceiling").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ceiling: %v\n%s", err, out)
		}
		nmbd = exec.Command("ip", "netns", "exec", nmbdNS, cb)
		nmbd.Stderr = os.Stderr
		err = nmbd.Start()
	default:
		nmbd, err = startNmbd(filepath.Join(work, "nmbd"), nmbdNS)
	}
	if err != nil {
		return err
	}
	defer stop(nmbd)
	targets := []*target{
		{name: "concierge", pid: box.Process.Pid, dst: netip.AddrPortFrom(netip.MustParseAddr(boxAddr), basePort), q: wire.MustName(boxName, 0x20, "")},
		{name: "nmbd", pid: nmbd.Process.Pid, dst: netip.AddrPortFrom(netip.MustParseAddr(nmbdAddr), basePort), q: wire.MustName(nmbdName, 0x20, "")},
	}
	for _, tg := range targets {
		if err := waitAnswer(cli, tg); err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
	}
	rssOn := rss(box.Process.Pid)
	res := map[string][][]result{}
	for range *rounds {
		for li, n := range levels {
			for _, tg := range targets {
				r, err := measureLoad(cli, n, tg)
				if err != nil {
					return fmt.Errorf("%s, %d requesters: %w", tg.name, n, err)
				}
				if res[tg.name] == nil {
					res[tg.name] = make([][]result, len(levels))
				}
				res[tg.name][li] = append(res[tg.name][li], r)
			}
		}
	}
	hwm, nmbdRSS := peak(box.Process.Pid), peak(nmbd.Process.Pid)

	fmt.Printf("\n%-10s | %-39s | %-39s | %s\n", "requesters", "concierge q/s   p50      p99   CPU/q", fmt.Sprintf("%-16sp50      p99   CPU/q", anchor+" q/s"), "q/s ratio, CPU/q ratio")
	for li, n := range levels {
		c, r := median(res["concierge"][li]), median(res["nmbd"][li])
		fmt.Printf("%-10d | %8.0f  %8s %8s %7s | %8.0f  %8s %8s %7s | %.2fx, %.2fx\n", n, c.qps, us(c.p50), us(c.p99), usf(c.cpuPerQ), r.qps, us(r.p50), us(r.p99), usf(r.cpuPerQ),
			c.qps/r.qps, float64(r.cpuPerQ)/float64(max(c.cpuPerQ, 1)))
		fmt.Printf("%-10s   CPU: concierge %.0f%% (generator %.0f%%), %s %.0f%% (generator %.0f%%); rounds q/s: concierge %s, %s %s\n",
			"", 100*c.srvCPU, 100*c.genCPU, anchor, 100*r.srvCPU, 100*r.genCPU, all(res["concierge"][li]), anchor, all(res["nmbd"][li]))
		if c.lost+r.lost > 0 {
			fmt.Printf("%-10s   lost: concierge %d of %d, %s %d of %d\n", "", c.lost, c.sum, anchor, r.lost, r.sum)
		}
	}
	fmt.Printf("\nmemory: concierge RSS %.1f MB with nbt off, %.1f MB with nbt on, %.1f MB peak under load: the NetBIOS part adds %.1f MB; %s peak RSS %.1f MB\n",
		mb(rssOff), mb(rssOn), mb(hwm), mb(hwm-rssOff), anchor, mb(nmbdRSS))
	return nil
}

// target is a server under test.
type target struct {
	name string
	pid  int
	dst  netip.AddrPort
	q    wire.Name
}

// median returns the round with the median queries per second.
func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return int(a.qps - b.qps) })
	return s[len(s)/2]
}

func all(rs []result) string {
	var f []string
	for _, r := range rs {
		f = append(f, fmt.Sprintf("%.0f", r.qps))
	}
	return strings.Join(f, "/")
}

func us(d time.Duration) string { return fmt.Sprintf("%dµs", d.Microseconds()) }

// usf prints a duration in µs with one decimal (CPU per query).
func usf(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond)) }
func mb(kb int) float64          { return float64(kb) / 1024 }

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// lanSetup makes a bridge namespace and hosts (namespace: address) on it.
func lanSetup(sw string, hosts map[string]string) error {
	cmds := [][]string{
		{"netns", "add", sw}, {"-n", sw, "link", "add", "br0", "type", "bridge"}, {"-n", sw, "link", "set", "br0", "up"},
	}
	i := 0
	for ns, addr := range hosts {
		port := fmt.Sprintf("p%d", i)
		i++
		cmds = append(cmds, []string{"netns", "add", ns},
			[]string{"link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw},
			[]string{"-n", sw, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "addr", "add", addr + netBits, "brd", "+", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"})
	}
	for _, c := range cmds {
		if err := ipCmd(c...); err != nil {
			return err
		}
	}
	return nil
}

func startConcierge(bin, data, ns, name string, nbt bool) (*exec.Cmd, error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"pop3.listen", ""}, {"pop3.tls_listen", ""}, {"hostname", "bench.example.test"},
		{"nbt.enabled", strconv.FormatBool(nbt)}, {"nbt.interfaces", "eth0"}, {"nbt.name", name}, {"nbt.workgroup", workgrp},
		// The load comes from one address: lift the per-source limit
		// (its check still runs for every packet).
		{"nbt.rate_limit", "10000000"}, {"nbt.rate_burst", "10000000"},
	} {
		if out, err := exec.Command(bin, "-data", data, "config", "set", kv[0], kv[1]).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("concierge config set %s: %v\n%s", kv[0], err, out)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-data", data, "serve", "-log", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// ip netns exec execs the command: the PID is concierge's.
	return cmd, nil
}

func startNmbd(dir, ns string) (*exec.Cmd, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\n netbios name = %s\n workgroup = %s\n interfaces = eth0\n bind interfaces only = yes\n"+
		" local master = no\n domain master = no\n preferred master = no\n log level = 0\n", nmbdName, workgrp)
	if *nmbdWINS {
		b.WriteString(" wins support = yes\n")
	}
	for _, d := range []string{"lock directory", "state directory", "cache directory", "pid directory", "private dir", "ncalrpc dir"} {
		sub := filepath.Join(dir, strings.ReplaceAll(d, " ", "_"))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, " %s = %s\n", d, sub)
	}
	fmt.Fprintf(&b, " log file = %s/log.nmbd\n", dir)
	conf := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "/usr/sbin/nmbd", "-F", "--no-process-group", "-s", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd, cmd.Start()
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// rss and peak read VmRSS and VmHWM in kB.
func rss(pid int) int  { return int(measure.StatusKB(pid, "VmRSS")) }
func peak(pid int) int { return int(measure.StatusKB(pid, "VmHWM")) }

func sockets(ns string, n int) ([]*net.UDPConn, error) {
	var cs []*net.UDPConn
	err := testnet.InNamespace(ns, func() error {
		for range n {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(cliAddr)})
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
		return nil
	})
	return cs, err
}

// waitAnswer waits up to 30 s for the server to answer a query.
func waitAnswer(cli string, tg *target) error {
	cs, err := sockets(cli, 1)
	if err != nil {
		return err
	}
	defer cs[0].Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := ask(cs[0], tg, uint16(rand.Uint32()), 300*time.Millisecond, make([]byte, 1500)); ok {
			time.Sleep(500 * time.Millisecond)
			return nil
		}
	}
	return errors.New("no answer to a name query within 30s")
}

// ask sends one query and waits for the answer with its ID.
func ask(c *net.UDPConn, tg *target, id uint16, d time.Duration, buf []byte) (time.Duration, bool) {
	q, _ := wire.NewQuery(id, tg.q, false, true).Pack()
	start := time.Now()
	if _, err := c.WriteToUDPAddrPort(q, tg.dst); err != nil {
		return 0, false
	}
	c.SetReadDeadline(start.Add(d))
	for {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, false
		}
		if n >= 12 && uint16(buf[0])<<8|uint16(buf[1]) == id && buf[3]&0x0f == 0 {
			return time.Since(start), true
		}
	}
}

// load runs n closed-loop requesters for the duration: each has one query
// outstanding and sends the next when its answer arrives (or after the
// timeout, counted as lost). One goroutine drives them all over one socket
// with recvmmsg/sendmmsg, so the generator spends as little CPU per query
// as it can and the servers get the rest of the machine.
func load(cli string, n int, tg *target) (result, error) {
	if *perSock {
		return loadSockets(cli, n, tg)
	}
	cs, err := sockets(cli, 1)
	if err != nil {
		return result{}, err
	}
	c := cs[0]
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	q, _ := wire.NewQuery(0, tg.q, false, true).Pack()
	to := net.UDPAddrFromAddrPort(tg.dst)
	type req struct {
		id   uint16
		sent time.Time
		pkt  []byte
	}
	reqs := make([]req, n)
	out := make([]ipv4.Message, n)
	in := make([]ipv4.Message, n)
	for i := range n {
		reqs[i].pkt = append([]byte(nil), q...)
		out[i].Buffers = [][]byte{nil}
		out[i].Addr = to
		in[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	seq := uint16(rand.Uint32())
	queued := 0
	next := func(i int, now time.Time) {
		seq++
		id := seq<<5 | uint16(i) // the low bits name the requester
		reqs[i].id, reqs[i].sent = id, now
		reqs[i].pkt[0], reqs[i].pkt[1] = byte(id>>8), byte(id)
		out[queued].Buffers[0] = reqs[i].pkt
		queued++
	}
	flush := func() error {
		for sent := 0; sent < queued; {
			k, err := pc.WriteBatch(out[sent:queued], 0)
			if err != nil {
				return err
			}
			sent += k
		}
		queued = 0
		return nil
	}
	lat := make([]time.Duration, 0, 1<<20)
	lost := 0
	start := time.Now()
	end := start.Add(*duration)
	for i := range n {
		next(i, start)
	}
	if err := flush(); err != nil {
		return result{}, err
	}
	lastCheck := start
	for {
		var k int
		var err error
		if *spin {
			// The generator never sleeps, so its own wake-ups do not
			// count in the servers' latency (but it takes a core).
			k, err = pc.ReadBatch(in, unix.MSG_DONTWAIT)
		} else {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			k, err = pc.ReadBatch(in, 0)
		}
		now := time.Now()
		if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, os.ErrDeadlineExceeded) {
			return result{}, err
		}
		if now.After(end) {
			break
		}
		for j := 0; j < k; j++ {
			b := in[j].Buffers[0][:in[j].N]
			if len(b) < 12 || b[3]&0x0f != 0 {
				continue
			}
			id := uint16(b[0])<<8 | uint16(b[1])
			i := int(id & 31)
			if i >= n || reqs[i].id != id {
				continue
			}
			lat = append(lat, now.Sub(reqs[i].sent))
			next(i, now)
		}
		if now.Sub(lastCheck) > *timeout/4 {
			lastCheck = now
			for i := range reqs {
				if now.Sub(reqs[i].sent) > *timeout {
					lost++
					next(i, now)
				}
			}
		}
		if err := flush(); err != nil {
			return result{}, err
		}
	}
	return summary(lat, lost, time.Since(start))
}

// summary turns the latencies of answered queries and the count of lost
// ones over el into a result.
func summary(lat []time.Duration, lost int, el time.Duration) (result, error) {
	r := result{lost: lost, sum: len(lat) + lost}
	if len(lat) == 0 {
		return r, errors.New("no query answered")
	}
	slices.Sort(lat)
	r.qps = float64(len(lat)) / el.Seconds()
	r.p50 = lat[len(lat)/2]
	r.p99 = lat[len(lat)*99/100]
	return r, nil
}

// loadSockets runs n requesters, each a goroutine with its own socket
// that sends a query and blocks until its answer comes.
func loadSockets(cli string, n int, tg *target) (result, error) {
	cs, err := sockets(cli, n)
	if err != nil {
		return result{}, err
	}
	type part struct {
		lat  []time.Duration
		lost int
	}
	parts := make([]part, n)
	end := time.Now().Add(*duration)
	start := time.Now()
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			c := cs[i]
			defer c.Close()
			buf := make([]byte, 1500)
			p := &parts[i]
			p.lat = make([]time.Duration, 0, 1<<18)
			id := uint16(rand.Uint32())
			for time.Now().Before(end) {
				id++
				d, ok := ask(c, tg, id, *timeout, buf)
				if !ok {
					p.lost++
					continue
				}
				p.lat = append(p.lat, d)
			}
		}()
	}
	for range n {
		<-done
	}
	el := time.Since(start)
	var lat []time.Duration
	lost := 0
	for _, p := range parts {
		lat = append(lat, p.lat...)
		lost += p.lost
	}
	return summary(lat, lost, el)
}

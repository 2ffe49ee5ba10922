// Package testnet builds throw-away LANs of network namespaces for
// integration tests against real peers: one namespace acts as the switch
// (a bridge), every host gets its own namespace joined to it by a veth pair.
// Everything a test creates (namespaces, processes, resolver files) is
// removed in t.Cleanup, even when the test fails.
//
// Tests that use it need root and the peers they name; a missing peer is a
// test failure, never a silent skip (make test installs them).
package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Require fails the test unless it runs as root and every tool is on PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: not run with -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration test needs root (network namespaces)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("integration test needs %q: %v (make test installs it)", tool, err)
		}
	}
}

var seq atomic.Int32

// LAN is one broadcast domain of namespaces.
type LAN struct {
	t      testing.TB
	prefix netip.Prefix
	sw     string // namespace holding the bridge
	id     string
	mu     sync.Mutex
	hosts  []*Host
}

// Host is one namespace on a LAN.
type Host struct {
	lan  *LAN
	Name string     // short name given by the test
	NS   string     // namespace name
	Addr netip.Addr // address on the LAN interface
	IF   string     // interface name inside the namespace
}

// NewLAN creates a LAN for the given IPv4 prefix, such as "10.77.0.0/24".
// Use private addresses only; never 192.0.2.0/24.
func NewLAN(t testing.TB, prefix string) *LAN {
	t.Helper()
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	id := fmt.Sprintf("t%d%d", os.Getpid()%100000, seq.Add(1))
	l := &LAN{t: t, prefix: p.Masked(), sw: id + "sw", id: id}
	t.Cleanup(l.cleanup)
	run(t, "ip", "netns", "add", l.sw)
	run(t, "ip", "-n", l.sw, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.sw, "link", "set", "br0", "up")
	return l
}

// AddHost creates a namespace with address prefix.host (the last octets
// replaced by n) and a broadcast address.
func (l *LAN) AddHost(name string, n int) *Host {
	l.t.Helper()
	a := l.prefix.Addr().As4()
	a[3] = byte(n)
	a[2] += byte(n >> 8)
	h := &Host{lan: l, Name: name, NS: l.id + name, Addr: netip.AddrFrom4(a), IF: "eth0"}
	l.mu.Lock()
	idx := len(l.hosts)
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	run(l.t, "ip", "netns", "add", h.NS)
	port := fmt.Sprintf("p%d", idx)
	run(l.t, "ip", "link", "add", h.IF, "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.sw)
	run(l.t, "ip", "-n", l.sw, "link", "set", port, "master", "br0", "up")
	run(l.t, "ip", "-n", h.NS, "link", "set", "lo", "up")
	run(l.t, "ip", "-n", h.NS, "addr", "add", fmt.Sprintf("%s/%d", h.Addr, l.prefix.Bits()), "brd", "+", "dev", h.IF)
	run(l.t, "ip", "-n", h.NS, "link", "set", h.IF, "up")
	return h
}

// Broadcast is the LAN's broadcast address.
func (l *LAN) Broadcast() netip.Addr {
	a := l.prefix.Addr().As4()
	bits := l.prefix.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1 << (32 - bits)) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Command returns a command that runs inside the host's namespace.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Run runs a command in the namespace and fails the test if it fails.
// It returns the combined output.
func (h *Host) Run(name string, args ...string) string {
	h.lan.t.Helper()
	out, err := h.Command(name, args...).CombinedOutput()
	if err != nil {
		h.lan.t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), h.Name, err, out)
	}
	return string(out)
}

// Output runs a command in the namespace and returns its combined output
// and error without failing the test.
func (h *Host) Output(name string, args ...string) (string, error) {
	out, err := h.Command(name, args...).CombinedOutput()
	return string(out), err
}

// Proc is a background process started in a namespace.
type Proc struct {
	Cmd  *exec.Cmd
	Out  *SafeBuffer
	done chan struct{}
	Err  error
}

// Wait waits for the process to exit, up to d; it reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitOutput waits until cond holds for the process's output (checked
// after every write), or the process ends, or d passes; it reports whether
// cond held.
func (p *Proc) WaitOutput(d time.Duration, cond func(out string) bool) bool {
	return p.Out.Wait(d, p.done, cond)
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) { p.Cmd.Process.Signal(sig) }

// Start starts a command in the namespace in the background. Its output is
// collected in Proc.Out; the process is killed (by PID) when the test ends.
func (h *Host) Start(name string, args ...string) *Proc {
	h.lan.t.Helper()
	return StartCmd(h.lan.t, h.Command(name, args...))
}

// StartCmd starts cmd in the background with the same guarantees as Start.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, Out: &SafeBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go func() { p.Err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.Exited() {
			cmd.Process.Signal(syscall.SIGTERM)
			if !p.Wait(3 * time.Second) {
				cmd.Process.Kill()
				p.Wait(3 * time.Second)
			}
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", cmd.Args, tail(p.Out.String(), 4000))
		}
	})
	return p
}

// SetResolver makes processes in the namespace use the DNS server at addr
// (through /etc/netns/NS/resolv.conf, which ip netns exec bind-mounts).
func (h *Host) SetResolver(addr string) {
	h.lan.t.Helper()
	dir := filepath.Join("/etc/netns", h.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.lan.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+addr+"\n"), 0o644); err != nil {
		h.lan.t.Fatal(err)
	}
}

// MAC returns the hardware address of the host's LAN interface.
func (h *Host) MAC() string {
	h.lan.t.Helper()
	out := h.Run("cat", "/sys/class/net/"+h.IF+"/address")
	return strings.TrimSpace(out)
}

func (l *LAN) cleanup() {
	l.mu.Lock()
	hosts := l.hosts
	l.mu.Unlock()
	names := []string{l.sw}
	for _, h := range hosts {
		names = append(names, h.NS)
	}
	DeleteNamespaces(names...)
}

// DeleteNamespaces kills every process in the named network namespaces
// (daemons that forked inside one, like postfix and nmbd, included: all
// of them were started there by the caller), then deletes the namespaces.
func DeleteNamespaces(names ...string) {
	for _, ns := range names {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, ns := range names {
		exec.Command("ip", "netns", "del", ns).Run()
		os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Concierge builds cmd/concierge once per test binary and returns its path.
func Concierge(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// One fixed place, replaced atomically, so test runs leave no
		// trail of binaries and concurrent test binaries do not collide.
		dir := filepath.Join(os.TempDir(), "concierge-test-bin")
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		tmp, err := os.CreateTemp(dir, "build-*")
		if err != nil {
			buildErr = err
			return
		}
		tmp.Close()
		cmd := exec.Command("go", "build", "-o", tmp.Name(), "concierge/cmd/concierge")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp.Name())
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		// Each test binary gets its own name: another package's tests
		// may rebuild while this one's servers run.
		old, _ := filepath.Glob(filepath.Join(dir, "concierge-*"))
		for _, f := range old {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(f), "concierge-%d", &pid); err == nil {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
					os.Remove(f) // its test binary is gone
				}
			}
		}
		buildPath = filepath.Join(dir, fmt.Sprintf("concierge-%d", os.Getpid()))
		if err := os.Rename(tmp.Name(), buildPath); err != nil {
			buildErr = err
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// WaitTCP waits until something in the host's namespace accepts
// connections on addr:port, or fails the test after d.
func (h *Host) WaitTCP(port int, d time.Duration) {
	h.lan.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _ := h.Output("ss", "-Htln", fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(out) != "" {
			return
		}
		if time.Now().After(deadline) {
			h.lan.t.Fatalf("nothing listens on port %d in %s after %v", port, h.Name, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// SafeBuffer is a bytes.Buffer safe for concurrent use; Wait lets a test
// wait for what a process writes.
type SafeBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed (and cleared) by the next Write
}

func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// check reports whether cond holds for the contents; if not, it returns a
// channel that is closed by the next write.
func (s *SafeBuffer) check(cond func(string) bool) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cond(s.b.String()) {
		return true, nil
	}
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return false, s.changed
}

// Wait waits until cond holds for the contents, checking again after every
// write, or until stop is closed or d has passed; it reports whether cond
// held.
func (s *SafeBuffer) Wait(d time.Duration, stop <-chan struct{}, cond func(string) bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ok, changed := s.check(cond)
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-stop:
			ok, _ := s.check(cond)
			return ok
		case <-timer.C:
			return false
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ServeLoopback runs a throw-away TCP server on 127.0.0.1 for the test:
// each connection is handed to handle in a goroutine of its own and closed
// after it. It returns the server's address; the listener closes with the
// test.
func ServeLoopback(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, handle)
}

// Flood writes chunk to c over and over, as a hostile peer would, until
// a write fails (the other side hung up) or 1 GiB is written; it returns
// how many bytes it wrote.
func Flood(c net.Conn, chunk []byte) int64 {
	var total int64
	for total < 1<<30 {
		n, err := c.Write(chunk)
		total += int64(n)
		if err != nil {
			break
		}
	}
	return total
}

// ServeTCP is ServeLoopback on the host's address and port (0: any) in
// its namespace.
func (h *Host) ServeTCP(t testing.TB, port int, handle func(net.Conn)) string {
	t.Helper()
	var l net.Listener
	if err := h.InNS(func() (err error) {
		l, err = net.Listen("tcp4", net.JoinHostPort(h.Addr.String(), strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, handle)
}

// Serve is the accept loop of ServeLoopback and ServeTCP on l, which
// closes with the test.
func Serve(t testing.TB, l net.Listener, handle func(net.Conn)) string {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

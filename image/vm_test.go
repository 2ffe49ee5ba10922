package image_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"concierge/image/qemu"
	"concierge/internal/testnet"
	"concierge/nbt/wire"
)

// The VM's forwarded ports, on 127.0.0.1 inside the VM's own network
// namespace (nothing else listens there).
const (
	fwdSMTP = "2525"
	fwdPOP3 = "1110"
	fwdHTTP = "8080"
	fwdNBT  = "1137"
	guestIP = qemu.GuestIP
)

// vm is the firmware booted in QEMU. QEMU runs in a network namespace of
// its own that has nothing but a loopback interface: user-mode
// networking there reaches no other network, and the host forwards on
// 127.0.0.1 are reachable only from sockets the test opens inside it.
// QEMU's restrict=on would do the same but drops every UDP packet the
// guest sends (libslirp's udp_input discards them before looking up the
// forward's socket), so a NetBIOS answer through a UDP forward could
// never come back.
type vm struct {
	t       *testing.T
	ns      string
	cmd     *exec.Cmd
	console testnet.SafeBuffer
	exited  chan struct{}
	start   time.Time
}

// startVM boots disk; extra are more QEMU arguments (a monitor).
func startVM(t *testing.T, disk, memory string, extra ...string) *vm {
	t.Helper()
	vmCount++
	v := &vm{t: t, ns: fmt.Sprintf("cimg%d-%d", os.Getpid(), vmCount), exited: make(chan struct{})}
	testnet.DeleteNamespaces(v.ns)
	if out, err := exec.Command("ip", "netns", "add", v.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { testnet.DeleteNamespaces(v.ns) })
	if out, err := exec.Command("ip", "-n", v.ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	v.cmd = qemu.Command(v.ns, memory, disk,
		qemu.TCP(fwdSMTP, "25"), qemu.TCP(fwdPOP3, "110"), qemu.TCP(fwdHTTP, "80"), qemu.UDP(fwdNBT, "137"))
	v.cmd.Args = append(v.cmd.Args, extra...)
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	v.start = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			v.console.Write([]byte(sc.Text() + "\n"))
		}
		v.cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() { v.cmd.Process.Kill(); <-v.exited })
	return v
}

// vmCount numbers the VMs of the test binary (their namespaces).
var vmCount int

// stop kills QEMU: what the guest wrote to its disk stays
// (cache=writethrough), nothing else.
func (v *vm) stop() {
	v.cmd.Process.Kill()
	<-v.exited
	testnet.DeleteNamespaces(v.ns)
}

func timeSince(v *vm) float64 { return time.Since(v.start).Seconds() }

func itoa(n int) string { return strconv.Itoa(n) }

// waitLines waits until the console has shown line n times.
func (v *vm) waitLines(line string, n int, d time.Duration) {
	v.t.Helper()
	if !v.console.Wait(d, v.exited, func(s string) bool { return strings.Count(s, line) >= n }) {
		v.t.Fatalf("no %q (#%d) on the console within %v; console:\n%s", line, n, d, tail(v.console.String()))
	}
}

// dial connects to a forwarded port from inside the VM's namespace.
func (v *vm) dial(network, port string) (net.Conn, error) {
	var c net.Conn
	err := testnet.InNamespace(v.ns, func() error {
		var err error
		c, err = net.DialTimeout(network, "127.0.0.1:"+port, 10*time.Second)
		return err
	})
	return c, err
}

func (v *vm) expectBanner(port, prefix string) {
	v.t.Helper()
	c, err := v.dial("tcp", port)
	if err != nil {
		v.t.Fatalf("port %s: %v", port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, prefix) {
		v.t.Fatalf("port %s: banner %q, %v; want %q", port, line, err, prefix)
	}
}

// http is a client for the setup page through the forward.
func (v *vm) http() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return v.dial("tcp", fwdHTTP)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// nbtQuery sends a unicast name query for name<00> (RFC 1002 4.2.12) and
// returns the addresses of the positive answer.
func (v *vm) nbtQuery(name string) ([]string, error) {
	c, err := v.dial("udp", fwdNBT)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	q, err := wire.NewQuery(0x4242, wire.MustName(name, 0x00, ""), false, true).Pack()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ { // UDP: resend on loss
		c.Write(q)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		p, err := wire.Parse(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("NetBIOS answer: %v", err)
		}
		if len(p.Answers) == 0 {
			return nil, fmt.Errorf("NetBIOS: no answer records: %+v", p)
		}
		var addrs []string
		for _, a := range p.Answers {
			nbs, err := wire.ParseNB(a.Data)
			if err != nil {
				return nil, err
			}
			for _, nb := range nbs {
				addrs = append(addrs, nb.Addr.String())
			}
		}
		return addrs, nil
	}
	return nil, errors.New("no answer to a unicast name query")
}

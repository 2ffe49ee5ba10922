// Command auth benchmarks password guessing against the real binary: 200
// clients try wrong passwords at once, half with SMTP AUTH PLAIN on port
// 465, half with POP3 AUTH PLAIN on port 995, each from a /24 of its own
// and each guessing a user of its own (the worst case: no client shares a
// back-off key with another, so every first guess is checked). It reports
// the server's peak resident memory (VmHWM; each argon2id check takes
// 19 MiB, and the box must run in 128 MB), how many checks per second the
// server ran, and how long a correct login of another user from another
// network takes meanwhile. Everything runs in a private network namespace
// over its loopback interface (127.0.0.0/8 gives every client its own
// /24).
//
// Run as root: go run ./cmd/bench/auth [-clients 200] [-duration 20s]
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"concierge/internal/measure"
)

var (
	clients  = flag.Int("clients", 200, "guessing clients, half SMTP, half POP3")
	duration = flag.Duration("duration", 20*time.Second, "how long the guessing goes on after the first wave")
	keep     = flag.Bool("keep", false, "keep the work directory")
)

const (
	host      = "127.0.0.1"
	smtpsPort = "1465"
	pop3sPort = "1995"
	password  = "correct horse staple"
	// targetMB is the most the box may use for the attack (issue 9).
	targetMB = 64
	innerEnv = "CONCIERGE_AUTH_BENCH_INNER"
)

// The correct logins during the attack come from this address.
var legitSource = netip.MustParseAddr("127.250.0.1")

func main() {
	flag.Parse()
	var err error
	if os.Getenv(innerEnv) != "" {
		err = inner(os.Getenv(innerEnv))
	} else {
		err = outer()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "auth bench:", err)
		os.Exit(1)
	}
}

// outer builds concierge, makes a namespace and runs the benchmark in it.
func outer() error {
	if os.Geteuid() != 0 {
		return errors.New("run as root (network namespace)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs ip (apt-get install iproute2): %v", err)
	}
	return measure.InNamespace("authbench", innerEnv, *keep, 0o700)
}

func inner(work string) error {
	pid, err := startConcierge(work)
	if err != nil {
		return err
	}
	defer syscall.Kill(pid, syscall.SIGTERM)
	startKB := measure.StatusKB(pid, "VmHWM")
	fmt.Printf("Password guessing: %d clients at once (%d SMTP AUTH PLAIN on 465, %d POP3 AUTH PLAIN on 995, implicit TLS),\n"+
		"each from its own /24 guessing its own user; then %v of guessing as fast as the server answers.\n",
		*clients, *clients-*clients/2, *clients/2, *duration)

	// A correct login of another user from another network, over and
	// over, alternating SMTP and POP3, for the whole run.
	var legit legitStats
	stopLegit := make(chan struct{})
	legitDone := make(chan struct{})
	phase := atomic.Int32{} // 0 first wave, 1 after it
	go func() {
		defer close(legitDone)
		for i := 0; ; i++ {
			select {
			case <-stopLegit:
				return
			default:
			}
			proto := smtpAttempt
			if i%2 == 1 {
				proto = pop3Attempt
			}
			start := time.Now()
			res, err := proto(legitSource, "alice", password)
			legit.add(int(phase.Load()), time.Since(start), res, err)
			time.Sleep(100 * time.Millisecond) // a person, not a loop
		}
	}()

	// Wave: every client's first guess at once.
	var wave, later counts
	begin := make(chan struct{})
	var wg sync.WaitGroup
	firstDone := make(chan struct{}, *clients)
	stop := make(chan struct{})
	waveStart := time.Now()
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := netip.AddrFrom4([4]byte{127, byte(10 + i/250), byte(i % 250), 1})
			user := fmt.Sprintf("user%03d", i)
			attempt := smtpAttempt
			if i%2 == 1 {
				attempt = pop3Attempt
			}
			<-begin
			res, err := attempt(src, user, "wrong password")
			wave.add(res, err)
			firstDone <- struct{}{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := attempt(src, user, "wrong password")
				later.add(res, err)
			}
		}()
	}
	close(begin)
	for range *clients {
		<-firstDone
	}
	waveTime := time.Since(waveStart)
	waveKB := measure.StatusKB(pid, "VmHWM")
	phase.Store(1)
	later.reset()
	cpu0 := cpuTicks(pid)
	laterStart := time.Now()
	time.Sleep(*duration)
	close(stop)
	laterTime := time.Since(laterStart)
	cpu1 := cpuTicks(pid)
	wg.Wait()
	close(stopLegit)
	<-legitDone
	peakKB := measure.StatusKB(pid, "VmHWM")

	fmt.Printf("\nfirst wave (%d wrong logins at once): answered in %.1f s: %d checked and refused (535 / -ERR [AUTH]), %d told to try later (454 4.7.0 / -ERR [SYS/TEMP]), %d errors\n",
		*clients, waveTime.Seconds(), wave.checked.Load(), wave.later.Load(), wave.errors.Load())
	fmt.Printf("  password checks: %.1f/s\n", float64(wave.checked.Load())/waveTime.Seconds())
	fmt.Printf("then %v of guessing: %.0f attempts/s; %.1f checks/s (535 / -ERR [AUTH]), %.0f/s refused up front (454 / [SYS/TEMP]), %d errors; server CPU %.0f %% of one core\n",
		laterTime.Round(time.Second), float64(later.total())/laterTime.Seconds(), float64(later.checked.Load())/laterTime.Seconds(),
		float64(later.later.Load())/laterTime.Seconds(), later.errors.Load(), cpu1.sub(cpu0)/laterTime.Seconds()*100)
	for p, name := range []string{"during the first wave", "after it"} {
		fmt.Printf("correct login of another user from another /24, %s: %s\n", name, legit.summary(p))
	}
	verdict := "under"
	if peakKB>>10 >= targetMB {
		verdict = "OVER"
	}
	fmt.Printf("concierge peak RSS (VmHWM): %d MB at start, %d MB after the first wave, %d MB at the end: %s the %d MB target\n",
		startKB>>10, waveKB>>10, peakKB>>10, verdict, targetMB)
	return nil
}

// counts are the answers to guesses.
type counts struct {
	checked, later, errors atomic.Int64
}

func (c *counts) add(res string, err error) {
	switch {
	case err != nil:
		c.errors.Add(1)
	case res == "checked":
		c.checked.Add(1)
	case res == "later":
		c.later.Add(1)
	default:
		c.errors.Add(1)
	}
}

func (c *counts) total() int64 { return c.checked.Load() + c.later.Load() + c.errors.Load() }

func (c *counts) reset() { c.checked.Store(0); c.later.Store(0); c.errors.Store(0) }

// legitStats are the correct logins' latencies by phase.
type legitStats struct {
	mu      sync.Mutex
	ok      [2][]float64 // milliseconds
	refused [2]int
	errs    [2]int
}

func (l *legitStats) add(phase int, d time.Duration, res string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.errs[phase]++
	case res == "ok":
		l.ok[phase] = append(l.ok[phase], float64(d.Microseconds())/1000)
	default:
		l.refused[phase]++
	}
}

func (l *legitStats) summary(phase int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := slices.Clone(l.ok[phase])
	s := fmt.Sprintf("%d logged in", len(v))
	if len(v) > 0 {
		slices.Sort(v)
		s += fmt.Sprintf(", median %.0f ms, 90th percentile %.0f ms, max %.0f ms", measure.Median(v), v[len(v)*9/10], v[len(v)-1])
	}
	return s + fmt.Sprintf("; %d refused, %d errors", l.refused[phase], l.errs[phase])
}

// dial connects from src over implicit TLS.
func dial(src netip.Addr, port string) (*tls.Conn, *bufio.Reader, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 30 * time.Second}
	raw, err := d.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, nil, err
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	return c, bufio.NewReader(c), nil
}

func plain(login, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + login + "\x00" + pw))
}

// smtpReply reads a (multi-line) reply and returns its last line.
func smtpReply(r *bufio.Reader) (string, error) {
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimSpace(l), nil
		}
	}
}

// smtpAttempt logs in once with SMTP AUTH PLAIN on port 465 and reports
// "ok", "checked" (535: the password was checked and is wrong) or
// "later" (454: refused for now).
func smtpAttempt(src netip.Addr, login, pw string) (string, error) {
	c, r, err := dial(src, smtpsPort)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if l, err := smtpReply(r); err != nil || !strings.HasPrefix(l, "220") {
		return "", fmt.Errorf("greeting %q: %v", l, err)
	}
	io.WriteString(c, "EHLO bench.test\r\n")
	if l, err := smtpReply(r); err != nil || !strings.HasPrefix(l, "250") {
		return "", fmt.Errorf("EHLO %q: %v", l, err)
	}
	io.WriteString(c, "AUTH PLAIN "+plain(login, pw)+"\r\n")
	l, err := smtpReply(r)
	if err != nil {
		return "", err
	}
	io.WriteString(c, "QUIT\r\n")
	switch {
	case strings.HasPrefix(l, "235"):
		return "ok", nil
	case strings.HasPrefix(l, "535"):
		return "checked", nil
	case strings.HasPrefix(l, "454"):
		return "later", nil
	}
	return "", fmt.Errorf("AUTH: %q", l)
}

// pop3Attempt logs in once with POP3 AUTH PLAIN on port 995.
func pop3Attempt(src netip.Addr, login, pw string) (string, error) {
	c, r, err := dial(src, pop3sPort)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
		return "", fmt.Errorf("greeting %q: %v", l, err)
	}
	io.WriteString(c, "AUTH PLAIN "+plain(login, pw)+"\r\n")
	l, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	io.WriteString(c, "QUIT\r\n")
	r.ReadString('\n')
	switch {
	case strings.HasPrefix(l, "+OK"):
		return "ok", nil
	case strings.HasPrefix(l, "-ERR [AUTH]"):
		return "checked", nil
	case strings.HasPrefix(l, "-ERR [SYS/TEMP]"):
		return "later", nil
	}
	return "", fmt.Errorf("AUTH: %q", strings.TrimSpace(l))
}

func startConcierge(work string) (int, error) {
	bin := filepath.Join(work, "concierge")
	data := filepath.Join(work, "data")
	cli := func(stdin string, args ...string) error {
		cmd := exec.Command(bin, append([]string{"-data", data}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("concierge %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, s := range [][]string{
		{"config", "set", "hostname", "bench.test"},
		{"config", "set", "smtp.mx_listen", ""},
		{"config", "set", "smtp.submission_listen", ""},
		{"config", "set", "smtp.submission_tls_listen", host + ":" + smtpsPort},
		{"config", "set", "smtp.max_connections", "1000"},
		{"config", "set", "smtp.max_connections_per_ip", "1000"},
		{"config", "set", "nbt.enabled", "false"},
		{"config", "set", "pop3.listen", ""},
		{"config", "set", "pop3.tls_listen", host + ":" + pop3sPort},
		{"config", "set", "pop3.max_connections", "1000"},
		{"config", "set", "pop3.max_connections_per_ip", "1000"},
		{"domain", "add", "example.test"},
	} {
		if err := cli("", s...); err != nil {
			return 0, err
		}
	}
	if err := cli(password+"\n", "user", "add", "alice"); err != nil {
		return 0, err
	}
	// The guessed users: one hash, copied (the CLI would hash each).
	if err := addUsers(data, *clients); err != nil {
		return 0, err
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		os.MkdirAll(filepath.Join(data, "mail", "alice", sub), 0o700)
	}
	logf, _ := os.Create(filepath.Join(work, "concierge.log"))
	cmd := exec.Command(bin, "-data", data, "serve", "-log", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go cmd.Wait()
	for _, port := range []string{smtpsPort, pop3sPort} {
		if err := waitPort(port, 20*time.Second); err != nil {
			return 0, fmt.Errorf("concierge: %v (see %s)", err, logf.Name())
		}
	}
	return cmd.Process.Pid, nil
}

// addUsers adds users user000... to the settings file, with alice's hash
// (the CLI would spend a hash on each).
func addUsers(data string, n int) error {
	path := filepath.Join(data, "concierge.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	users, _ := cfg["users"].([]any)
	if len(users) != 1 {
		return fmt.Errorf("%s: want one user, alice", path)
	}
	hash := users[0].(map[string]any)["hash"]
	for u := range n {
		users = append(users, map[string]any{"name": fmt.Sprintf("user%03d", u), "hash": hash})
	}
	cfg["users"] = users
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func waitPort(port string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ticks is a process's utime+stime in clock ticks.
type ticks int64

func cpuTicks(pid int) ticks {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var u, k int64
	fmt.Sscan(f[11], &u) // field 14
	fmt.Sscan(f[12], &k) // field 15
	return ticks(u + k)
}

// sub is the CPU time between two readings in seconds (USER_HZ is 100
// on Linux).
func (t ticks) sub(o ticks) float64 { return float64(t-o) / 100 }

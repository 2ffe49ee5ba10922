// Command pop3 benchmarks POP3 retrieve-and-delete: a maildrop of 1,000
// messages of 5 KB is retrieved and deleted in one session, in plain text
// and over STLS, from concierge and from Dovecot's POP3 server (a private
// instance on a copy of the same Maildir). Two clients drive both servers:
// Python's poplib (one command at a time) and a Go client of its own that
// pipelines every RETR and DELE (RFC 2449 6.6). It also measures the memory
// a session costs. Everything runs in a private network namespace over its
// loopback interface.
//
// Run as root: go run ./cmd/bench/pop3 [-rounds 5] [-messages 1000]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"concierge/internal/maildir"
	"concierge/internal/measure"
	"concierge/pop3d"
)

var (
	rounds   = flag.Int("rounds", 5, "alternating rounds per client and mode (the median is printed)")
	messages = flag.Int("messages", 1000, "messages in the maildrop")
	size     = flag.Int("size", 5*1024, "message size in octets")
	sessions = flag.Int("sessions", 200, "idle sessions opened to measure memory")
	keep     = flag.Bool("keep", false, "keep the work directory")
	phases   = flag.Bool("phases", false, "print the phases of each pipelined session")
	only     = flag.String("only", "", `run only this client ("poplib" or "pipelined") and mode ("plain" or "stls"), e.g. "pipelined/plain"; empty: all`)
)

const (
	user     = "bench"
	password = "correct horse staple"
	host     = "127.0.0.1"
	memUsers = 20 // logged-in sessions for the memory measure (one per user)

	conciergePOP3, conciergePOP3S = "1110", "1995"
	dovecotPOP3, dovecotPOP3S     = "2110", "2995"
	innerEnv                      = "CONCIERGE_POP3_BENCH_INNER"
)

func main() {
	flag.Parse()
	var err error
	if os.Getenv(innerEnv) != "" {
		err = inner()
	} else {
		err = outer()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pop3 bench:", err)
		os.Exit(1)
	}
}

// outer builds concierge, makes a namespace and runs the benchmark in it.
func outer() error {
	if os.Geteuid() != 0 {
		return errors.New("run as root (network namespace, Dovecot)")
	}
	for _, tool := range []string{"ip", "dovecot", "openssl", "/usr/bin/python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (apt-get install iproute2 dovecot-pop3d openssl python3): %v", tool, err)
		}
	}
	// 0755: Dovecot's mail user must reach its Maildir.
	return measure.InNamespace("pop3bench", innerEnv, *keep, 0o755)
}

// server is one of the two POP3 servers under test.
type server struct {
	name        string
	plain, tls  string // ports
	maildir     string // the bench user's Maildir
	uid         int    // owner of the mail files
	pid         int
	fillCounter int
	cpu         *measure.CPUGroup // the server and every process it starts
}

func inner() error {
	work := os.Getenv(innerEnv)
	msgs := makeMessages(*messages, *size)
	con, err := startConcierge(work)
	if err != nil {
		return err
	}
	defer con.cpu.Close()
	hashes, err := conciergeHashes(work)
	if err != nil {
		return err
	}
	dov, err := startDovecot(work, hashes)
	if err != nil {
		return err
	}
	defer dov.cpu.Close()
	fmt.Printf("POP3 retrieve-and-delete: %d messages of %d octets in one session; median of %d alternating rounds.\n",
		*messages, *size, *rounds)
	fmt.Printf("%-22s %-6s %12s %12s %8s %8s\n", "client", "mode", "concierge", "dovecot", "ratio", "paired")
	type driver struct {
		name, short string
		run         func(port string, stls bool) (int, time.Duration, error)
	}
	var cpuRows []string
	for _, d := range []driver{{"python poplib", "poplib", runPoplib}, {"go, pipelined RETR", "pipelined", runPipelined}} {
		for _, stls := range []bool{false, true} {
			mode := "plain"
			if stls {
				mode = "STLS"
			}
			if *only != "" && !strings.EqualFold(*only, d.short+"/"+mode) {
				continue
			}
			var ours, theirs, ourCPU, theirCPU []float64
			for range *rounds {
				for _, s := range []*server{con, dov} {
					if err := s.fill(msgs); err != nil {
						return err
					}
					cpu0, err := s.cpu.Usage()
					if err != nil {
						return err
					}
					n, dur, err := d.run(s.plain, stls)
					if err != nil {
						return fmt.Errorf("%s against %s: %v", d.name, s.name, err)
					}
					if n != *messages {
						return fmt.Errorf("%s against %s: %d messages retrieved, want %d", d.name, s.name, n, *messages)
					}
					if left := s.count(); left != 0 {
						return fmt.Errorf("%s against %s: %d messages left after the deleting session", d.name, s.name, left)
					}
					cpu1, err := s.cpu.Usage()
					if err != nil {
						return err
					}
					rate := float64(n) / dur.Seconds()
					perMsg := float64((cpu1 - cpu0).Microseconds()) / float64(n)
					if s == con {
						ours, ourCPU = append(ours, rate), append(ourCPU, perMsg)
					} else {
						theirs, theirCPU = append(theirs, rate), append(theirCPU, perMsg)
					}
				}
			}
			mo, mt := measure.Median(ours), measure.Median(theirs)
			// Each round runs both servers back to back, so the median
			// of the per-round ratios is steadier on a busy machine.
			var paired []float64
			for i := range ours {
				paired = append(paired, ours[i]/theirs[i])
			}
			fmt.Printf("%-22s %-6s %8.0f msg/s %8.0f msg/s %7.2f× %7.2f×   %v / %v\n", d.name, mode, mo, mt, mo/mt, measure.Median(paired), measure.Rounds(ours), measure.Rounds(theirs))
			co, ct := measure.Median(ourCPU), measure.Median(theirCPU)
			cpuRows = append(cpuRows, fmt.Sprintf("%-22s %-6s %8.1f µs    %8.1f µs    %7.2f×   %v / %v", d.name, mode, co, ct, ct/co, measure.Rounds(ourCPU), measure.Rounds(theirCPU)))
		}
	}
	fmt.Printf("\nServer CPU time per message (every process of the server, login and deletion included; median):\n")
	fmt.Printf("%-22s %-6s %12s %14s %8s\n", "client", "mode", "concierge", "dovecot", "dovecot÷concierge")
	for _, r := range cpuRows {
		fmt.Println(r)
	}
	fmt.Println()
	return memory(con, dov, msgs)
}

// makeMessages returns n messages of about size octets with CRLF line
// endings and some lines that start with a dot.
func makeMessages(n, size int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	for i := range n {
		var b bytes.Buffer
		fmt.Fprintf(&b, "Return-Path: <load@remote.test>\r\nFrom: load@remote.test\r\nTo: bench@example.test\r\nSubject: bench %d\r\nMessage-ID: <%d@remote.test>\r\n\r\n", i, i)
		for b.Len() < size-80 {
			if r.IntN(20) == 0 {
				b.WriteString(".")
			}
			for range 70 {
				b.WriteByte(byte('a' + r.IntN(26)))
			}
			b.WriteString("\r\n")
		}
		out = append(out, b.Bytes())
	}
	return out
}

// fill puts the messages into the server's Maildir (new/), as a fresh set
// of files with new unique names.
func (s *server) fill(msgs [][]byte) error {
	s.fillCounter++
	dir := filepath.Join(s.maildir, "new")
	now := time.Now().Unix()
	for i, m := range msgs {
		p := filepath.Join(dir, fmt.Sprintf("%d.M%dP%dQ%d.bench.test", now, i, os.Getpid(), s.fillCounter))
		if err := os.WriteFile(p, m, 0o600); err != nil {
			return err
		}
		if s.uid != 0 {
			os.Chown(p, s.uid, s.uid)
		}
	}
	return nil
}

func (s *server) count() int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(s.maildir, sub))
		n += len(ents)
	}
	return n
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func startConcierge(work string) (*server, error) {
	bin := filepath.Join(work, "concierge")
	data := filepath.Join(work, "concierge-data")
	cli := func(stdin string, args ...string) error {
		cmd := exec.Command(bin, append([]string{"-data", data}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("concierge %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	steps := [][]string{
		{"config", "set", "hostname", "bench.test"},
		{"config", "set", "smtp.mx_listen", ""},
		{"config", "set", "smtp.submission_listen", ""},
		{"config", "set", "smtp.submission_tls_listen", ""},
		{"config", "set", "nbt.enabled", "false"},
		{"config", "set", "pop3.listen", host + ":" + conciergePOP3},
		{"config", "set", "pop3.tls_listen", host + ":" + conciergePOP3S},
		{"config", "set", "pop3.trusted_networks", "127.0.0.0/8"},
		{"config", "set", "pop3.max_connections", "1000"},
		{"config", "set", "pop3.max_connections_per_ip", "1000"},
		{"config", "set", "pop3.max_connections_per_net", "1000"},
		{"domain", "add", "example.test"},
	}
	for _, s := range steps {
		if err := cli("", s...); err != nil {
			return nil, err
		}
	}
	for _, u := range append(memUserNames(), user) {
		if err := cli(password+"\n", "user", "add", u); err != nil {
			return nil, err
		}
	}
	for _, u := range append(memUserNames(), user) {
		for _, sub := range []string{"tmp", "new", "cur"} {
			os.MkdirAll(filepath.Join(data, "mail", u, sub), 0o700)
		}
	}
	s := &server{name: "concierge", plain: conciergePOP3, tls: conciergePOP3S, maildir: filepath.Join(data, "mail", user)}
	return s, s.start(filepath.Join(work, "concierge.log"), bin, "-data", data, "serve", "-log", "warn")
}

// start runs the server's command in a CPU group of its own, with its
// output in logPath, and waits until its plain port answers.
func (s *server) start(logPath, name string, args ...string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	if s.cpu, err = measure.NewCPUGroup(s.name); err != nil {
		return err
	}
	cmd := s.cpu.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.cpu.Close()
		return err
	}
	go cmd.Wait()
	s.pid = cmd.Process.Pid
	if err := waitPort(s.plain, 20*time.Second); err != nil {
		s.cpu.Close()
		return fmt.Errorf("%s: %v (see %s)", s.name, err, logPath)
	}
	return nil
}

// memUserNames are the users whose sessions stay logged in while memory
// is measured (a maildrop is locked by one session at a time).
func memUserNames() []string {
	var out []string
	for i := range memUsers {
		out = append(out, fmt.Sprintf("mem%02d", i))
	}
	return out
}

// conciergeHashes reads the users' argon2id hashes from concierge's
// configuration, so that Dovecot checks the very same hashes and a login
// costs both servers the same.
func conciergeHashes(work string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(work, "concierge-data", "concierge.json"))
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Users []struct{ Name, Hash string }
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, u := range cfg.Users {
		if !strings.HasPrefix(u.Hash, "$argon2id$") {
			return nil, fmt.Errorf("user %s: not an argon2id hash", u.Name)
		}
		m[u.Name] = u.Hash
	}
	return m, nil
}

func startDovecot(work string, hashes map[string]string) (*server, error) {
	dir := filepath.Join(work, "dovecot")
	for _, d := range []string{"run", "state", "home", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "cert.pem"), "-days", "2", "-subj", "/CN=bench.test"); err != nil {
		return nil, err
	}
	var pw strings.Builder
	for _, u := range append(memUserNames(), user) {
		fmt.Fprintf(&pw, "%s:{ARGON2ID}%s\n", u, hashes[u])
		for _, sub := range []string{"tmp", "new", "cur"} {
			os.MkdirAll(filepath.Join(dir, "mail", u, sub), 0o700)
		}
	}
	os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644)
	// The mail is owned by nobody: Dovecot does not serve mail as root.
	if err := run("chown", "-R", "65534:65534", filepath.Join(dir, "mail"), filepath.Join(dir, "home")); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = pop3
listen = %[2]s
ssl = yes
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=%[1]s/home/%%u
}
mail_location = maildir:%[1]s/mail/%%u
pop3_lock_session = yes
first_valid_uid = 1
service pop3-login {
  inet_listener pop3 {
    port = %[3]s
  }
  inet_listener pop3s {
    port = %[4]s
    ssl = yes
  }
}
`, dir, host, dovecotPOP3, dovecotPOP3S)
	cf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	s := &server{name: "dovecot", plain: dovecotPOP3, tls: dovecotPOP3S, maildir: filepath.Join(dir, "mail", user), uid: 65534}
	return s, s.start(filepath.Join(dir, "stdout.log"), "dovecot", "-F", "-c", cf)
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

const poplibScript = `
import poplib, ssl, sys, time
host, port, stls, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t0 = time.perf_counter()
p = poplib.POP3(host, port, timeout=60)
if stls:
    p.stls(ctx)
p.user(user); p.pass_(pw)
n = p.stat()[0]
for i in range(1, n + 1):
    p.retr(i)
    p.dele(i)
p.quit()
print(n, time.perf_counter() - t0)
`

// runPoplib retrieves and deletes every message with Python's poplib,
// one command at a time; the time excludes the interpreter's start.
func runPoplib(port string, stls bool) (int, time.Duration, error) {
	flag := "0"
	if stls {
		flag = "1"
	}
	out, err := exec.Command("/usr/bin/python3", "-c", poplibScript, host, port, flag, user, password).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%v\n%s", err, out)
	}
	var n int
	var secs float64
	if _, err := fmt.Sscan(string(out), &n, &secs); err != nil {
		return 0, 0, fmt.Errorf("poplib output %q", out)
	}
	return n, time.Duration(secs * float64(time.Second)), nil
}

// runPipelined retrieves and deletes every message with one client that
// sends all RETR and DELE commands at once (RFC 2449 6.6) while it reads
// the responses, checking every octet count.
func runPipelined(port string, stls bool) (int, time.Duration, error) {
	start := time.Now()
	raw, err := net.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return 0, 0, err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Minute))
	var conn net.Conn = raw
	r := bufio.NewReaderSize(conn, 64<<10)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		if err != nil {
			return l, err
		}
		if !strings.HasPrefix(l, "+OK") {
			return l, fmt.Errorf("server said %q", strings.TrimSpace(l))
		}
		return l, nil
	}
	if _, err := line(); err != nil {
		return 0, 0, err
	}
	if stls {
		io.WriteString(conn, "STLS\r\n")
		if _, err := line(); err != nil {
			return 0, 0, err
		}
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return 0, 0, err
		}
		conn = tc
		r = bufio.NewReaderSize(conn, 64<<10)
	}
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "USER %s\r\nPASS %s\r\nSTAT\r\n", user, password)
	w.Flush()
	var stat string
	for range 3 {
		if stat, err = line(); err != nil {
			return 0, 0, err
		}
	}
	var n int
	fmt.Sscanf(stat, "+OK %d", &n)
	tLogin := time.Since(start)
	werr := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "RETR %d\r\nDELE %d\r\n", i, i)
		}
		w.WriteString("QUIT\r\n")
		werr <- w.Flush()
	}()
	for i := 1; i <= n; i++ {
		l, err := line()
		if err != nil {
			return 0, 0, err
		}
		var octets int
		fmt.Sscanf(l, "+OK %d", &octets)
		got := 0
		for {
			b, err := r.ReadSlice('\n')
			if err != nil {
				return 0, 0, fmt.Errorf("RETR %d: %v", i, err)
			}
			if len(b) == 3 && b[0] == '.' {
				break
			}
			got += len(b)
			if b[0] == '.' {
				got-- // dot-stuffing
			}
		}
		if got != octets {
			return 0, 0, fmt.Errorf("RETR %d: %d octets announced, %d received", i, octets, got)
		}
		if _, err := line(); err != nil {
			return 0, 0, err
		}
	}
	tRetr := time.Since(start)
	if _, err := line(); err != nil { // QUIT: the UPDATE state is done
		return 0, 0, err
	}
	if *phases {
		fmt.Printf("    %s: login+list %v, retrieve %v, update %v\n", port, tLogin.Round(time.Millisecond), (tRetr - tLogin).Round(time.Millisecond), (time.Since(start) - tRetr).Round(time.Millisecond))
	}
	if err := <-werr; err != nil {
		return 0, 0, err
	}
	return n, time.Since(start), nil
}

// memory measures what sessions cost. Dovecot runs one process per
// session: the proportional set size of its pop3 processes. Concierge's
// resident memory moves by tens of MB with each argon2id check (19 MB), which
// drowns the sessions, so its sessions are measured in this process
// (inProcessMemory) and only its peak RSS is given here.
func memory(con, dov *server, msgs [][]byte) error {
	fmt.Println()
	for _, u := range memUserNames() {
		for _, s := range []*server{con, dov} {
			ms := *s
			ms.maildir = filepath.Join(filepath.Dir(s.maildir), u)
			if err := ms.fill(msgs); err != nil {
				return err
			}
		}
	}
	loggedIn := func(s *server, port string) ([]net.Conn, error) {
		var conns []net.Conn
		for _, u := range memUserNames() {
			c, err := net.Dial("tcp", net.JoinHostPort(host, port))
			if err != nil {
				return conns, err
			}
			conns = append(conns, c)
			r := bufio.NewReader(c)
			r.ReadString('\n')
			fmt.Fprintf(c, "USER %s\r\nPASS %s\r\nLIST\r\n", u, password)
			r.ReadString('\n')
			if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
				return conns, fmt.Errorf("%s login: %q", u, l)
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return conns, err
				}
				if l == ".\r\n" {
					break
				}
			}
		}
		return conns, nil
	}
	closeAll := func(cs []net.Conn) {
		for _, c := range cs {
			c.Close()
		}
		time.Sleep(300 * time.Millisecond)
	}
	cs, err := loggedIn(dov, dov.plain)
	if err != nil {
		closeAll(cs)
		return fmt.Errorf("dovecot sessions: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	pss, rssKB, n := pop3Processes()
	closeAll(cs)
	if n > 0 {
		fmt.Printf("  dovecot   %-44s %6.1f KB PSS per pop3 process (RSS %d KB), %d processes\n", fmt.Sprintf("logged in, %d messages listed", len(msgs)), float64(pss)/float64(n), rssKB/int64(n), n)
	}
	fmt.Printf("  concierge peak RSS over the whole run: %d MB (argon2id password checks take 19 MB each)\n", measure.StatusKB(con.pid, "VmHWM")>>10)
	return inProcessMemory(filepath.Dir(con.maildir), len(msgs))
}

// trustAll accepts every password: the in-process measure leaves the
// password hash out.
type trustAll struct{}

func (trustAll) Authenticate(_ context.Context, login, _ string, _ netip.Addr) (string, error) {
	return login, nil
}

type maildirs struct{ root string }

func (m maildirs) Lock(user string) (pop3d.Maildrop, error) {
	d, err := maildir.Lock(filepath.Join(m.root, user))
	if errors.Is(err, maildir.ErrInUse) {
		return nil, pop3d.ErrInUse
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

const holdSessions = `
import socket, ssl, sys
port, mode, users = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
socks = []
def until(s, end):
    b = b""
    while not b.endswith(end):
        d = s.recv(65536)
        if not d:
            raise SystemExit("closed: %r" % b[-200:])
        b += d
    return b
for u in users:
    s = socket.create_connection(("127.0.0.1", port))
    if mode == "tls":
        s = ctx.wrap_socket(s)
    until(s, b"\r\n")
    if mode == "login":
        s.sendall(b"USER " + u.encode() + b"\r\nPASS x\r\nLIST\r\n")
        until(s, b"\r\n.\r\n")
    else:
        s.sendall(b"CAPA\r\n")
        until(s, b"\r\n.\r\n")
    socks.append(s)
print("READY", flush=True)
sys.stdin.read()
`

// inProcessMemory runs the POP3 server inside this process, holds
// sessions open from a Python client and reports the growth of the Go
// heap and stacks per session after a garbage collection.
func inProcessMemory(mailRoot string, nmsgs int) error {
	srv := pop3d.NewServer(trustAll{}, maildirs{mailRoot}, &pop3d.Settings{MaxConns: 10000, MaxConnsPerIP: 10000, MaxConnsPerNet: 10000,
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, nil)
	defer srv.Close()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		return err
	}
	go srv.Serve(l)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	tl, err := tls.Listen("tcp", host+":0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		return err
	}
	go srv.Serve(tl)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	fmt.Println("Memory per session, pop3d in this process (Go heap and stacks after GC):")
	for _, c := range []struct {
		what, mode string
		port       int
		n          int
	}{
		{"idle, plain (after CAPA)", "plain", l.Addr().(*net.TCPAddr).Port, *sessions},
		{"idle, TLS (after CAPA)", "tls", tl.Addr().(*net.TCPAddr).Port, *sessions},
		{fmt.Sprintf("logged in, %d messages listed", nmsgs), "login", l.Addr().(*net.TCPAddr).Port, memUsers},
	} {
		users := make([]string, c.n)
		for i := range users {
			users[i] = "x"
		}
		if c.mode == "login" {
			users = memUserNames()
		}
		before := heap()
		cmd := exec.Command("/usr/bin/python3", append([]string{"-c", holdSessions, strconv.Itoa(c.port), c.mode}, users...)...)
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "READY" {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("session holder: %q", line)
		}
		if got := srv.Sessions(); got != c.n {
			return fmt.Errorf("%d sessions open, want %d", got, c.n)
		}
		after := heap()
		stdin.Close()
		cmd.Wait()
		fmt.Printf("  %-46s %6.1f KB per session (%d sessions)\n", c.what, float64(after-before)/1024/float64(c.n), c.n)
		for deadline := time.Now().Add(10 * time.Second); srv.Sessions() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Println("  a message being sent is streamed through one pooled 32 KB buffer, never held whole")
	return nil
}

// pop3Processes sums the PSS and RSS (KB) of Dovecot's pop3 processes.
func pop3Processes() (pss, rssKB int64, n int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) != "pop3" {
			continue
		}
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "Pss:") {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(l, "Pss:")), &kb)
				pss += kb
			}
		}
		rssKB += measure.StatusKB(pid, "VmRSS")
		n++
	}
	return pss, rssKB, n
}

package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// This file starts the mail peers that tests talk to: dnsmasq as a DNS
// server with test zones, smtp-sink as a receiving server that writes each
// message to a file, and private Postfix instances.

// StartDNS runs dnsmasq on the host's address as an authoritative-only
// server for the given records, e.g. "--mx-host=remote.test,mx1.remote.test,10",
// "--host-record=mx1.remote.test,10.77.4.2", "--dns-rr=nullmx.test,15,000000".
// Names under local (such as "test") that have no record answer NXDOMAIN.
func (h *Host) StartDNS(local string, records ...string) *Proc {
	h.lan.t.Helper()
	args := []string{"--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", "--user=root", "--group=root",
		"--listen-address=" + h.Addr.String(), "--pid-file=", "--log-queries=extra", "--local=/" + local + "/"}
	p := h.Start("/usr/sbin/dnsmasq", append(args, records...)...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := h.Output("ss", "-Hlun", "sport = :53")
		if strings.TrimSpace(out) != "" {
			return p
		}
		if p.Exited() || time.Now().After(deadline) {
			h.lan.t.Fatalf("dnsmasq did not start:\n%s", p.Out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sink is an smtp-sink that writes every transaction to a file.
type Sink struct {
	Host *Host
	Dir  string
	Proc *Proc
	Port int
}

// StartSink runs smtp-sink on the host's address and port; extra options
// go before the address (e.g. "-r", "rcpt", "-b", "451 4.3.0 Try later").
func (h *Host) StartSink(port int, extra ...string) *Sink {
	h.lan.t.Helper()
	dir, err := os.MkdirTemp("", "sink-")
	if err != nil {
		h.lan.t.Fatal(err)
	}
	h.lan.t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	s := &Sink{Host: h, Dir: dir, Port: port}
	s.start(extra...)
	return s
}

func (s *Sink) start(extra ...string) {
	args := append([]string{"-u", "nobody", "-d", s.Dir + "/%M%S."}, extra...)
	args = append(args, fmt.Sprintf("%s:%d", s.Host.Addr, s.Port), "256")
	s.Proc = s.Host.Start("smtp-sink", args...)
	s.Host.WaitTCP(s.Port, 10*time.Second)
}

// Restart stops the sink and starts it again with other options.
func (s *Sink) Restart(extra ...string) {
	s.Host.lan.t.Helper()
	s.Proc.Signal(15)
	s.Proc.Wait(5 * time.Second)
	for i := 0; i < 100; i++ {
		out, _ := s.Host.Output("ss", "-Htln", fmt.Sprintf("sport = :%d", s.Port))
		if strings.TrimSpace(out) == "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.start(extra...)
}

// Messages returns the content of every received transaction (the
// envelope as X-Mail-Args and X-Rcpt-Args lines, then the message).
func (s *Sink) Messages() []string {
	files, _ := filepath.Glob(filepath.Join(s.Dir, "*"))
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// Count is the number of transactions received.
func (s *Sink) Count() int {
	files, _ := filepath.Glob(filepath.Join(s.Dir, "*"))
	return len(files)
}

// Postfix is a private Postfix instance in a namespace.
type Postfix struct {
	Host *Host
	Dir  string // config_directory; queue and Maildirs live below it
	// Maildir is the virtual_mailbox_base: all mail lands in
	// Maildir/all/new, with a Delivered-To: header per recipient.
	Maildir string
	t       testing.TB
}

// StartPostfix starts a private Postfix on the host, listening on port
// (smtpd, with the options of master.cf given as "-o name=value" in
// smtpdOpts), that delivers mail for the virtual domains into Maildirs
// and applies the extra main.cf lines ("name = value").
func StartPostfix(t testing.TB, h *Host, port int, domains []string, smtpdOpts []string, mainCF ...string) *Postfix {
	t.Helper()
	dir, err := os.MkdirTemp("", "postfix-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Postfix{Host: h, Dir: dir, Maildir: filepath.Join(dir, "mail"), t: t}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "exec", h.NS, "postfix", "-c", dir, "stop").Run()
		if t.Failed() {
			t.Logf("postfix log (%s):\n%s", h.Name, tail(p.Log(), 4000))
		}
		os.RemoveAll(dir)
	})
	os.Chmod(dir, 0o755)
	for _, d := range []string{"data", "mail", "queue"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	exec.Command("chown", "postfix:postfix", filepath.Join(dir, "data")).Run()
	exec.Command("chown", "nobody:nogroup", filepath.Join(dir, "mail")).Run()
	main := []string{
		"compatibility_level = 3.6",
		"config_directory = " + dir,
		"queue_directory = " + filepath.Join(dir, "queue"),
		"data_directory = " + filepath.Join(dir, "data"),
		"meta_directory = /etc/postfix",
		"maillog_file = " + filepath.Join(dir, "postfix.log"),
		"maillog_file_prefixes = /tmp",
		"inet_interfaces = " + h.Addr.String(),
		"inet_protocols = ipv4",
		"myhostname = " + h.Name + ".peer.test",
		"mydestination =",
		"mynetworks = 127.0.0.0/8",
		"alias_maps =",
		"alias_database =",
		"smtputf8_enable = no",
		"biff = no",
		"virtual_mailbox_domains = " + strings.Join(domains, " "),
		"virtual_mailbox_base = " + p.Maildir,
		"virtual_mailbox_maps = static:all/",
		"virtual_uid_maps = static:65534",
		"virtual_gid_maps = static:65534",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
	}
	// Lines given by the caller replace the defaults of the same name.
	override := map[string]bool{}
	for _, l := range mainCF {
		k, _, _ := strings.Cut(l, "=")
		override[strings.TrimSpace(k)] = true
	}
	main = slices.DeleteFunc(main, func(l string) bool {
		k, _, _ := strings.Cut(l, "=")
		return override[strings.TrimSpace(k)]
	})
	main = append(main, mainCF...)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(main, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCF(h, port, smtpdOpts)), 0o644); err != nil {
		t.Fatal(err)
	}
	// In the namespace: inet_interfaces must exist where it runs.
	h.Run("postfix", "-c", dir, "check")
	h.Run("postfix", "-c", dir, "start")
	if port > 0 {
		h.WaitTCP(port, 20*time.Second)
	}
	return p
}

// masterCF is Debian's master.cf without chroot, with our smtpd line.
func masterCF(h *Host, port int, opts []string) string {
	sys, _ := os.ReadFile("/etc/postfix/master.cf")
	var b strings.Builder
	if port > 0 {
		fmt.Fprintf(&b, "%s:%d inet n - n - - smtpd\n", h.Addr, port)
		for _, o := range opts {
			fmt.Fprintf(&b, "  %s\n", o)
		}
	}
	skip := false
	for _, l := range strings.Split(string(sys), "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			if !skip {
				b.WriteString(l + "\n")
			}
			continue
		}
		f := strings.Fields(l)
		skip = len(f) < 8 || f[1] == "inet"
		if skip {
			continue
		}
		f[4] = "n" // no chroot: the private queue is not set up for one
		b.WriteString(strings.Join(f, " ") + "\n")
	}
	return b.String()
}

// Configure changes main.cf lines and reloads.
func (p *Postfix) Configure(lines ...string) {
	p.t.Helper()
	for _, l := range lines {
		if out, err := exec.Command("postconf", "-c", p.Dir, "-e", l).CombinedOutput(); err != nil {
			p.t.Fatalf("postconf %s: %v\n%s", l, err, out)
		}
	}
	p.Host.Run("postfix", "-c", p.Dir, "reload")
}

// Log returns the instance's log.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "postfix.log"))
	return string(b)
}

// Delivered returns the messages delivered to a virtual address (every
// message when addr is empty).
func (p *Postfix) Delivered(addr string) []string {
	files, _ := filepath.Glob(filepath.Join(p.Maildir, "all", "new", "*"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if addr == "" || strings.Contains(strings.ToLower(string(b)), "delivered-to: "+strings.ToLower(addr)+"\n") {
			out = append(out, string(b))
		}
	}
	return out
}

// WaitFor polls cond until it holds or d has passed: every millisecond at
// first, backing off to every 50ms, so that state a server updates just
// after the client sees the effect is seen at once.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}

// StartDovecotAuth runs a private Dovecot that only authenticates (no
// mail protocols) the given users, for Postfix's smtpd_sasl_type =
// dovecot. It returns the path of the auth socket for smtpd_sasl_path.
func StartDovecotAuth(t testing.TB, h *Host, users map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dovecot-auth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	var pw strings.Builder
	for u, p := range users {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s\n", u, p)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.Start("dovecot", "-c", filepath.Join(dir, "dovecot.conf"), "-F")
	sock := filepath.Join(dir, "run", "auth-postfix")
	if !WaitFor(10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }) {
		b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("dovecot auth did not start:\n%s\n%s", p.Out.String(), b)
	}
	return sock
}

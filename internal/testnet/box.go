package testnet

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Box is a concierge appliance run from the real binary in a namespace.
type Box struct {
	*Host
	t    testing.TB
	Bin  string
	Data string
	Proc *Proc
}

// NewBox prepares a data directory for a box on host h, with SMTP on the
// host's address (ports 25, 587, 465) and the other services off; the test
// adds domains and users with CLI before Start.
func NewBox(t testing.TB, h *Host) *Box {
	t.Helper()
	b := &Box{Host: h, t: t, Bin: Concierge(t), Data: t.TempDir()}
	a := h.Addr.String()
	b.CLI("config", "set", "hostname", "mail.example.test")
	b.CLI("config", "set", "smtp.mx_listen", a+":25")
	b.CLI("config", "set", "smtp.submission_listen", a+":587")
	b.CLI("config", "set", "smtp.submission_tls_listen", a+":465")
	b.CLI("config", "set", "pop3.listen", "")
	b.CLI("config", "set", "pop3.tls_listen", "")
	b.CLI("config", "set", "nbt.enabled", "false")
	return b
}

// CLI runs "concierge -data DIR args..." and fails the test on error.
func (b *Box) CLI(args ...string) string {
	b.t.Helper()
	return b.CLIInput("", args...)
}

// CLIInput is CLI with standard input (for passwords).
func (b *Box) CLIInput(stdin string, args ...string) string {
	b.t.Helper()
	out, err := b.CLITry(stdin, args...)
	if err != nil {
		b.t.Fatalf("concierge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// CLITry runs the CLI and returns its output and error.
func (b *Box) CLITry(stdin string, args ...string) (string, error) {
	cmd := exec.Command(b.Bin, append([]string{"-data", b.Data}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Start runs "concierge serve" in the namespace. With waitPort > 0 it
// waits until the server has started every service (it logs the first
// "settings applied") and checks that waitPort accepts connections.
func (b *Box) Start(waitPort int) {
	b.t.Helper()
	b.Proc = b.Host.Start(b.Bin, "-data", b.Data, "serve", "-log", "debug")
	if waitPort <= 0 {
		return
	}
	if !b.Proc.WaitOutput(StartTimeout, func(out string) bool { return strings.Contains(out, `msg="settings applied" generation=1 `) }) {
		b.t.Fatalf("concierge serve did not start within %v:\n%s", StartTimeout, b.Proc.Out.String())
	}
	if out, _ := b.Output("ss", "-Htln", fmt.Sprintf("sport = :%d", waitPort)); strings.TrimSpace(out) == "" {
		b.t.Fatalf("concierge serve started but does not listen on %d:\n%s", waitPort, b.Proc.Out.String())
	}
}

// How long a box may take to start, and to apply changed settings.
const (
	StartTimeout  = 20 * time.Second
	ReloadTimeout = 10 * time.Second
)

// WaitSettingsApplied waits for the control API's settings-applied event
// ("concierge wait settings-applied"). CLI edits return only once the
// running server applied them, so after one this returns at once; it
// checks that the server is up and has applied settings.
func (b *Box) WaitSettingsApplied() {
	b.t.Helper()
	b.waitSocket()
	b.CLI("wait", "settings-applied", "--timeout", ReloadTimeout.String())
}

// waitSocket waits until the server answers on its control socket (the
// first thing it opens; a crashed one may have left a stale file), so
// that the CLI talks to it.
func (b *Box) waitSocket() {
	b.t.Helper()
	sock := filepath.Join(b.Data, "control.sock")
	answers := func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !WaitFor(StartTimeout, func() bool { return answers() || b.Proc.Exited() }) || b.Proc.Exited() {
		b.t.Fatalf("concierge serve did not open %s:\n%s", sock, b.Proc.Out.String())
	}
}

// ReloadSettings applies a hand edit of the settings file
// ("concierge config reload"). With wantOK it fails the test when the
// server refuses the file, else when it applies it; it returns the CLI's
// output.
func (b *Box) ReloadSettings(wantOK bool) string {
	b.t.Helper()
	out, err := b.CLITry("", "config", "reload")
	if (err == nil) != wantOK {
		b.t.Fatalf("concierge config reload: %v (want ok: %v)\n%s\n%s", err, wantOK, out, tail(b.Proc.Out.String(), 4000))
	}
	return out
}

// Kill stops the server with SIGKILL (a crash) and waits for it.
func (b *Box) Kill() {
	b.Proc.Signal(syscall.SIGKILL)
	b.Proc.Wait(10 * time.Second)
}

// Stop stops the server with SIGTERM and waits for it.
func (b *Box) Stop() {
	b.Proc.Signal(syscall.SIGTERM)
	if !b.Proc.Wait(30 * time.Second) {
		b.t.Errorf("concierge serve did not stop within 30s of SIGTERM")
		b.Kill()
	}
}

// Maildir lists the message files of a user (new and cur).
func (b *Box) Maildir(user string) []string {
	var files []string
	for _, sub := range []string{"new", "cur"} {
		m, _ := filepath.Glob(filepath.Join(b.Data, "mail", user, sub, "*"))
		files = append(files, m...)
	}
	return files
}

// MaildirText returns the contents of every message of a user.
func (b *Box) MaildirText(user string) []string {
	var out []string
	for _, f := range b.Maildir(user) {
		data, err := os.ReadFile(f)
		if err != nil {
			b.t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

package appliance_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"concierge/internal/testnet"
)

// The CLI is a client of the running server's control API, and works on
// the data directory alone when the server is stopped (issue 10,
// acceptance 3, the CLI half).
func TestCLIWithServerRunningAndStopped(t *testing.T) {
	testnet.Require(t, "ss")
	lan := testnet.NewLAN(t, "10.77.31.0/24")
	b := testnet.NewBox(t, lan.AddHost("box", 1))
	b.CLI("domain", "add", "example.test")
	b.Start(25)

	// A change returns once applied: the server's own log (its ring
	// buffer, read through the API; its stdout reaches the test later)
	// has the generation already.
	b.CLIInput("a fine password\n", "user", "add", "carol")
	if out := b.CLI("log", "50"); !strings.Contains(out, `msg="settings applied" generation=2 `) {
		t.Errorf("user add returned before the server applied it:\n%s", out)
	}
	if out := b.CLI("user", "list"); !strings.Contains(out, "carol\tcarol@example.test") {
		t.Errorf("user list: %q", out)
	}
	if out, err := b.CLITry("", "domain", "add", "nodot"); err == nil || !strings.Contains(out, "domain: ") {
		t.Errorf("a bad domain through the server: %v %q", err, out)
	}
	out := b.CLI("status")
	for _, want := range []string{"settings generation 2", "smtp", "up", "listening", "10.77.31.1:25", "accepted", "delivery", "queued"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if out := b.CLI("firmware", "status"); !strings.Contains(out, "version ") || !strings.Contains(out, "slot none") {
		t.Errorf("firmware status off the firmware image: %q", out)
	}
	// A server that is not the box's init neither reboots nor switches
	// off the machine it runs on.
	for _, cmd := range []string{"reboot", "poweroff"} {
		if out, err := b.CLITry("", cmd); err == nil || !strings.Contains(out, "not the box's init") {
			t.Errorf("%s off the firmware image: %v %q", cmd, err, out)
		}
	}
	if out := b.CLI("nbt", "names"); !strings.Contains(out, "off") {
		t.Errorf("nbt names with nbt off: %q", out)
	}
	// events.wait: generation 2 is there; a third comes with the next edit.
	if out := b.CLI("wait", "settings-applied", "--after", "1"); !strings.Contains(out, "generation 2") {
		t.Errorf("wait: %q", out)
	}
	waited := make(chan string)
	go func() {
		out, _ := b.CLITry("", "wait", "settings-applied", "--after", "2", "--timeout", "20s")
		waited <- out
	}()
	b.CLI("relay", "add", "10.77.31.0/24")
	if out := <-waited; !strings.Contains(out, "generation 3") {
		t.Errorf("a waiter did not see generation 3: %q", out)
	}
	if _, err := os.Stat(filepath.Join(b.Data, "concierge.pid")); err == nil {
		t.Error("a pid file is written")
	}
	if _, err := os.Stat(filepath.Join(b.Data, "nbt.sock")); err == nil {
		t.Error("nbt.sock is there")
	}

	b.Stop()
	if _, err := os.Stat(filepath.Join(b.Data, "control.sock")); err == nil {
		t.Error("the control socket outlives the server")
	}
	b.CLIInput("another password\n", "user", "add", "dave")
	if out := b.CLI("user", "list"); !strings.Contains(out, "carol") || !strings.Contains(out, "dave") {
		t.Errorf("user list with the server stopped: %q", out)
	}
	if out, err := b.CLITry("", "status"); err == nil || !strings.Contains(out, "the server is not running") {
		t.Errorf("status with the server stopped: %v %q", err, out)
	}
	// The next start applies what was changed meanwhile.
	b.Start(25)
	if out := b.CLI("user", "list"); !strings.Contains(out, "dave") {
		t.Errorf("after restart: %q", out)
	}
}

// Backup on one box, restore on a fresh running box: the same settings,
// password hashes included, in force without a restart: a restored user
// logs in over POP3 at once (issue 10, acceptance 5).
func TestBackupRestoreLive(t *testing.T) {
	testnet.Require(t, "ss")
	lan := testnet.NewLAN(t, "10.77.32.0/24")
	box := lan.AddHost("box", 2)
	client := lan.AddHost("client", 10)
	// The backup comes from a box with the same address (a replaced
	// box), made with the CLI on its data directory alone.
	src := testnet.NewBox(t, box)
	src.CLI("domain", "add", "example.test")
	src.CLI("domain", "add", "example.net", "--alias-of", "example.test")
	src.CLIInput("pebble beach 77\n", "user", "add", "erin")
	src.CLI("alias", "add", "@example.net", "erin")
	src.CLIInput("office key 4242\n", "admin", "passwd")
	src.CLI("config", "set", "pop3.listen", box.Addr.String()+":110")
	src.CLI("config", "set", "pop3.trusted_networks", client.Addr.String()+"/32")
	// Its SRS key (made at its first start) comes along: the services
	// restart within the server to take it.
	key := strings.Repeat("k", 32)
	os.WriteFile(filepath.Join(src.Data, "srs.key"), []byte(key), 0o600)
	backup := src.CLI("backup")
	file := filepath.Join(t.TempDir(), "box.backup")
	os.WriteFile(file, []byte(backup), 0o600)
	// One from a box at another address cannot listen here.
	other := testnet.NewBox(t, lan.AddHost("other", 3))
	otherFile := filepath.Join(t.TempDir(), "other.backup")
	os.WriteFile(otherFile, []byte(other.CLI("backup")), 0o600)

	dst := testnet.NewBox(t, box)
	dst.CLI("config", "set", "pop3.listen", box.Addr.String()+":110")
	dst.Start(110)
	before := dst.CLI("config", "show")
	if out, err := dst.CLITry("", "restore", otherFile); err == nil || !strings.Contains(out, "the previous ones are back") {
		t.Errorf("a restore the services refuse: %v %q", err, out)
	}
	if after := dst.CLI("config", "show"); after != before {
		t.Errorf("a refused restore changed the settings:\n%s\n---\n%s", before, after)
	}

	if out := dst.CLI("restore", file); !strings.Contains(out, "the running server applied it") {
		t.Fatalf("restore: %q", out)
	}
	var a, b struct{ Settings json.RawMessage }
	json.Unmarshal([]byte(backup), &a)
	json.Unmarshal([]byte(dst.CLI("backup")), &b)
	if string(a.Settings) != string(b.Settings) {
		t.Errorf("settings after restore differ:\n%s\n---\n%s", a.Settings, b.Settings)
	}
	if !strings.Contains(string(b.Settings), "$argon2id$") {
		t.Error("the restored settings have no hashes")
	}
	c := client.DialTCP(box.Addr.String() + ":110")
	r := bufio.NewReader(c)
	line := func() string { l, _ := r.ReadString('\n'); return l }
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	fmt.Fprintf(c, "USER erin\r\n")
	line()
	fmt.Fprintf(c, "PASS pebble beach 77\r\n")
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Errorf("the restored user's password does not log in: %q\n%s", l, dst.Proc.Out.String())
	}
	if got, _ := os.ReadFile(filepath.Join(dst.Data, "srs.key")); string(got) != key {
		t.Errorf("the SRS key was not restored")
	}
	if n := strings.Count(dst.Proc.Out.String(), `msg=started`); n != 1 {
		t.Errorf("the server started %d times", n)
	}
}

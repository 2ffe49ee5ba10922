package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Queue IDs are checked before they name a file: "queue del
// ../../concierge" used to delete the settings file.
func TestQueueRefusesPathIDs(t *testing.T) {
	dir := t.TempDir()
	if out, code := runCLI(t, dir, "", "domain", "add", "example.test"); code != 0 {
		t.Fatal(out)
	}
	os.MkdirAll(filepath.Join(dir, "queue", "env"), 0o700)
	os.MkdirAll(filepath.Join(dir, "queue", "msg"), 0o700)
	settings := filepath.Join(dir, "concierge.json")
	before, _ := os.ReadFile(settings)
	// A file the old code would have reached through env/ID.json.
	os.WriteFile(filepath.Join(dir, "x.json"), []byte("{}"), 0o600)
	for _, args := range [][]string{
		{"queue", "del", "../../concierge"},
		{"queue", "del", "../../x"},
		{"queue", "retry", "../../x"},
		{"queue", "show", "../../x"},
		{"queue", "del", "/etc/passwd"},
	} {
		out, code := runCLI(t, dir, "", args...)
		if code == 0 || !strings.Contains(out, "not a queue ID") {
			t.Errorf("concierge %s: exit %d, %q; want a refusal", strings.Join(args, " "), code, out)
		}
	}
	if after, err := os.ReadFile(settings); err != nil || string(after) != string(before) {
		t.Errorf("the settings file changed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json")); err != nil {
		t.Errorf("x.json: %v", err)
	}
	out, code := runCLI(t, dir, "", "queue", "del", "1772442900.M1P2Q3.mail.example.test")
	if code == 0 || !strings.Contains(out, "no such queued message") {
		t.Errorf("del of an unknown ID: exit %d, %q", code, out)
	}
	if out, code := runCLI(t, dir, "", "queue", "list"); code != 0 || !strings.Contains(out, "the queue is empty") {
		t.Errorf("queue list: exit %d, %q", code, out)
	}
}

// The CLI manages the queue through the appliance's API only.
func TestCLIDoesNotImportQueuePackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range strings.Fields(string(out)) {
		if strings.HasPrefix(imp, "concierge/smtpd") {
			t.Errorf("cmd/concierge imports %s; it goes through appliance.Queue", imp)
		}
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, dir, stdin string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := run(append([]string{"-data", dir}, args...), strings.NewReader(stdin), &out, &out)
	return out.String(), code
}

func TestCommandsAndErrors(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"", []string{"domain", "add", "example.test"}, 0, ""},
		{"", []string{"domain", "add", "example.net", "--alias-of", "example.test"}, 0, ""},
		{"", []string{"domain", "add", "not a domain"}, 1, "domain: "},
		{"", []string{"domain", "list"}, 0, "example.test (primary)\nexample.net (alias of example.test)\n"},
		{"correct horse\n", []string{"user", "add", "bob"}, 0, ""},
		{"correct horse\n", []string{"user", "add", "bob"}, 1, `user: "bob" already exists`},
		{"123\n", []string{"user", "add", "carol"}, 1, "password: too short"},
		{"", []string{"alias", "add", "info@example.test", "bob"}, 0, ""},
		{"", []string{"alias", "add", "info@elsewhere.test", "bob"}, 1, "address: "},
		{"", []string{"relay", "add", "10.1.0.0/24"}, 0, ""},
		{"", []string{"relay", "add", "0.0.0.0/0"}, 1, "open relay"},
		{"", []string{"relay", "list"}, 0, "10.1.0.0/24\n"},
		{"", []string{"user", "list"}, 0, "bob\tbob@example.test bob@example.net info@example.test\n"},
		{"", []string{"config", "set", "smtp.max_recipients", "many"}, 1, "smtp.max_recipients"},
		{"", []string{"config", "set", "smtp.max_recipients", "0"}, 1, "smtp.max_recipients: must be between"},
		{"", []string{"config", "get", "smtp.max_recipients"}, 0, "100\n"},
		{"", []string{"config", "check"}, 0, "ok"},
		{"", []string{"config", "set", "delivery.smarthost", "smtp.isp.test:587"}, 0, ""},
		{"", []string{"config", "set", "delivery.smarthost_user", "office"}, 0, ""},
		{"", []string{"config", "set", "delivery.smarthost_password", "isp-secret-42"}, 0, ""},
		{"", []string{"config", "get", "delivery.smarthost_password"}, 0, "(set, hidden)\n"},
		{"", []string{"user", "-h"}, 0, "concierge user add NAME"},
		{"", []string{"bogus"}, 2, "unknown command"},
	}
	for _, s := range steps {
		out, code := runCLI(t, dir, s.stdin, s.args...)
		if code != s.code || !strings.Contains(out, s.want) {
			t.Errorf("concierge %s: exit %d, output %q; want exit %d and %q", strings.Join(s.args, " "), code, out, s.code, s.want)
		}
	}
	// No secret is printed: not by show, get or keys.
	for _, args := range [][]string{{"config", "show"}, {"config", "keys"}, {"config", "get", "delivery.smarthost_password"}} {
		out, _ := runCLI(t, dir, "", args...)
		if strings.Contains(out, "$argon2id$") || strings.Contains(out, "isp-secret-42") {
			t.Errorf("concierge %s prints a secret:\n%s", strings.Join(args, " "), out)
		}
	}
}

func TestBadFileListsEveryError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "concierge.json"), []byte(`{"version": 1, "hostname": "nodot",
  "relay_networks": ["0.0.0.0/0"], "smtp": {"max_message_size": 1, "max_recipients": 0}}`), 0o600)
	for _, args := range [][]string{{"config", "check"}, {"serve"}} {
		out, code := runCLI(t, dir, "", args...)
		if code == 0 {
			t.Errorf("%v accepted a bad file", args)
		}
		for _, want := range []string{"hostname:", "relay_networks[0]: 0.0.0.0/0", "smtp.max_message_size:", "smtp.max_recipients:"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v output lacks %q:\n%s", args, want, out)
			}
		}
	}
}

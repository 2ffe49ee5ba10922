package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"concierge/internal/pwhash"
)

// Each testdata/bad/NAME.json must be refused with every line of NAME.err
// somewhere in the error.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.json")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, _ := os.ReadFile(f)
			want, _ := os.ReadFile(strings.TrimSuffix(f, ".json") + ".err")
			_, err := Parse(data)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error lacks %q:\n%v", line, err)
				}
			}
		})
	}
}

func TestDefaultIsValidAndRoundTrips(t *testing.T) {
	c := Default()
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("default config invalid: %v", errs)
	}
	c2, err := Parse(c.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if string(c2.Marshal()) != string(c.Marshal()) {
		t.Fatalf("round trip changed the config:\n%s\n%s", c.Marshal(), c2.Marshal())
	}
}

func TestEdits(t *testing.T) {
	c := Default()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.AddDomain("Example.TEST", ""))
	must(c.AddDomain("example.net", "example.test"))
	if err := c.AddDomain("example.org", "example.net"); err == nil || !strings.Contains(err.Error(), "alias-of") {
		t.Errorf("alias of an alias: %v", err)
	}
	if err := c.AddDomain("example.test", ""); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate domain: %v", err)
	}
	must(c.AddUser("bob", "correct horse"))
	for _, pw := range []string{"short", "password", "carolcarol", "aaaaaaaaaa"} {
		if err := c.AddUser("carol", pw); err == nil || !strings.HasPrefix(err.Error(), "password:") {
			t.Errorf("weak password %q: %v", pw, err)
		}
	}
	if err := c.AddUser("bob", "another good one"); err == nil || !strings.Contains(err.Error(), "user:") {
		t.Errorf("existing user: %v", err)
	}
	if ok, _ := pwhash.Verify(context.Background(), c.User("bob").Hash, "correct horse"); !ok {
		t.Error("password hash does not verify")
	}
	if ok, _ := pwhash.Verify(context.Background(), c.User("bob").Hash, "wrong"); ok {
		t.Error("password hash does not verify")
	}
	must(c.AddAlias("Info@example.test", []string{"bob", "x@remote.test"}))
	if got := c.AddressesOf("bob"); strings.Join(got, " ") != "bob@example.test bob@example.net info@example.test" {
		t.Errorf("AddressesOf = %v", got)
	}
	if err := c.DelUser("bob"); err == nil {
		t.Error("deleted a user an alias delivers to")
	}
	if err := c.DelDomain("example.test"); err == nil {
		t.Error("deleted a domain with an alias domain")
	}
	must(c.Set("smtp.max_message_size", "1048576"))
	must(c.Set("pop3.trusted_networks", "10.0.0.0/24, 10.1.0.0/24"))
	if v, _ := c.Get("pop3.trusted_networks"); v != "10.0.0.0/24,10.1.0.0/24" {
		t.Errorf("list round trip: %q", v)
	}
	if err := c.Set("users", "x"); err == nil {
		t.Error("set users accepted")
	}
	if err := c.Set("smtp.idle_timeout", "forever"); err == nil || !strings.Contains(err.Error(), "smtp.idle_timeout") {
		t.Errorf("bad duration: %v", err)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
}

func TestStoreUpdateIsAtomicAndValidated(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	if _, err := s.Update(func(c *Config) error { return c.AddDomain("example.test", "") }); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	_, err := s.Update(func(c *Config) error { c.SMTP.MaxRecipients = 0; return nil })
	if err == nil || !strings.Contains(err.Error(), "smtp.max_recipients") {
		t.Fatalf("invalid update: %v", err)
	}
	after, _ := os.ReadFile(s.Path())
	if string(before) != string(after) {
		t.Fatal("a refused update changed the file")
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600 (it holds password hashes)", fi.Mode().Perm())
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Default().Marshal())
	files, _ := filepath.Glob("testdata/bad/*.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// What parses cleanly writes out and parses back the same.
		c2, err := Parse(c.Marshal())
		if err != nil {
			t.Fatalf("re-parse of a valid config failed: %v", err)
		}
		if string(c2.Marshal()) != string(c.Marshal()) {
			t.Fatal("round trip changed the config")
		}
	})
}

func FuzzSet(f *testing.F) {
	f.Add("smtp.max_message_size", "1000000")
	f.Add("hostname", "mail.example.test")
	f.Add("pop3.trusted_networks", "10.0.0.0/8,")
	f.Add("smtp.idle_timeout", "5m")
	f.Fuzz(func(t *testing.T, key, value string) {
		c := Default()
		if err := c.Set(key, value); err != nil {
			return
		}
		// Set never yields a config that cannot be written and read back.
		if _, err := Parse(c.Marshal()); err != nil && !strings.Contains(err.Error(), ": ") {
			t.Fatalf("Set(%q, %q) produced an unreadable config: %v", key, value, err)
		}
	})
}

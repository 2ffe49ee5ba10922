package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
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

// What an edit command refuses, a hand edit of the file must not get
// through Validate either: each case is refused by both, with the same
// words, and Validate names the field.
func TestValidateRefusesWhatEditsRefuse(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Domains = []Domain{{Name: "example.test"}, {Name: "example.net", AliasOf: "example.test"}}
		c.Users = []User{{Name: "bob", Hash: HashPassword("correct horse")}}
		c.RelayNetworks = []string{"10.1.0.0/24"}
		return c
	}
	relay := func(n string) func(*Config) error { return func(c *Config) error { return c.AddRelayNetwork(n) } }
	handRelay := func(n string) func(*Config) { return func(c *Config) { c.RelayNetworks = append(c.RelayNetworks, n) } }
	domain := func(n, of string) func(*Config) error { return func(c *Config) error { return c.AddDomain(n, of) } }
	handDomain := func(n, of string) func(*Config) {
		return func(c *Config) { c.Domains = append(c.Domains, Domain{Name: n, AliasOf: of}) }
	}
	alias := func(a string, tg ...string) func(*Config) error {
		return func(c *Config) error { return c.AddAlias(a, tg) }
	}
	handAlias := func(a string, tg ...string) func(*Config) {
		return func(c *Config) { c.Aliases = append(c.Aliases, Alias{Address: a, Targets: tg}) }
	}
	cases := []struct {
		edit     func(*Config) error
		hand     func(*Config)
		field    string
		sameText bool // the edit's message, after its field, is Validate's too
	}{
		{relay("0.0.0.0/0"), handRelay("0.0.0.0/0"), "relay_networks[1]", true},
		{relay("::/0"), handRelay("::/0"), "relay_networks[1]", true},
		{relay("0.0.0.0/1"), handRelay("0.0.0.0/1"), "relay_networks[1]", true},
		{relay("2000::/3"), handRelay("2000::/3"), "relay_networks[1]", true},
		{relay("::ffff:0.0.0.0/96"), handRelay("::ffff:0.0.0.0/96"), "relay_networks[1]", true},
		{relay("10.0.0.0/33"), handRelay("10.0.0.0/33"), "relay_networks[1]", true},
		{relay("10.1.0.0/24"), handRelay("10.1.0.0/24"), "relay_networks[1]", false},
		{domain("intranet", ""), handDomain("intranet", ""), "domains[2].name", true},
		{domain("[10.0.0.1]", ""), handDomain("[10.0.0.1]", ""), "domains[2].name", true},
		{domain("example.org", "nope.test"), handDomain("example.org", "nope.test"), "domains[2].alias_of", true},
		{domain("example.org", "example.net"), handDomain("example.org", "example.net"), "domains[2].alias_of", true},
		{domain("example.test", ""), handDomain("example.test", ""), "domains[2].name", false},
		{func(c *Config) error { return c.AddUser("Bob", "correct horse") },
			func(c *Config) { c.Users = append(c.Users, User{Name: "Bob", Hash: c.Users[0].Hash}) }, "users[1].name", true},
		{func(c *Config) error { return c.AddUser("postmaster", "correct horse") },
			func(c *Config) { c.Users = append(c.Users, User{Name: "postmaster", Hash: c.Users[0].Hash}) }, "users[1].name", true},
		{alias("info@elsewhere.test", "bob"), handAlias("info@elsewhere.test", "bob"), "aliases[0].address", true},
		{alias("info@example.test", "ghost"), handAlias("info@example.test", "ghost"), "aliases[0].targets[0]", true},
		{alias("a%b@example.test", "bob"), handAlias("a%b@example.test", "bob"), "aliases[0].address", true},
	}
	for _, tc := range cases {
		c := base()
		eerr := tc.edit(c)
		if eerr == nil {
			t.Errorf("%s: the edit command accepted it", tc.field)
			continue
		}
		c = base()
		tc.hand(c)
		verrs := c.Validate()
		var msg string
		for _, e := range verrs {
			if fe, ok := e.(*FieldError); ok && fe.Field == tc.field {
				msg = fe.Msg
			}
		}
		if msg == "" {
			t.Errorf("edit refused (%v) but Validate has no error for %s: %v", eerr, tc.field, verrs)
			continue
		}
		var fe *FieldError
		if tc.sameText && errors.As(eerr, &fe) && fe.Msg != msg {
			t.Errorf("%s: the edit says %q, Validate %q", tc.field, fe.Msg, msg)
		}
	}
}

// Secrets are hidden from show and get, and kept in the file.
func TestSecretsHidden(t *testing.T) {
	c := Default()
	if err := c.AddDomain("example.test", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.AddUser("bob", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("delivery.smarthost_password"); v != "" {
		t.Errorf("unset password reads %q, want empty", v)
	}
	// In this order: a password needs a user name first.
	for _, kv := range [][2]string{{"delivery.smarthost", "smtp.isp.test:587"}, {"delivery.smarthost_user", "office"}, {"delivery.smarthost_password", "isp-secret-42"}} {
		if err := c.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	hash := c.User("bob").Hash
	shown := string(c.Redacted().Marshal())
	for _, secret := range []string{"isp-secret-42", hash, "$argon2id$"} {
		if strings.Contains(shown, secret) {
			t.Errorf("Redacted shows %q:\n%s", secret, shown)
		}
	}
	if strings.Count(shown, Hidden) != 2 {
		t.Errorf("want 2 hidden values:\n%s", shown)
	}
	if v, _ := c.Get("delivery.smarthost_password"); v != Hidden {
		t.Errorf("get smarthost_password = %q, want %q", v, Hidden)
	}
	if v, _ := c.Get("delivery.smarthost_user"); v != "office" {
		t.Errorf("get smarthost_user = %q", v)
	}
	// The config itself keeps them: that is what is saved (and backed up).
	if c.Delivery.SmarthostPassword != "isp-secret-42" || !strings.Contains(string(c.Marshal()), hash) {
		t.Error("Redacted or Get changed the config")
	}
}

// Every setting whose name says it is a secret is tagged as one, so a new
// secret cannot be printed by "config show" by mistake.
func TestSecretFieldsAreTagged(t *testing.T) {
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				p := path + "." + name
				secretName := false
				for _, w := range []string{"password", "hash", "secret", "token", "passphrase"} {
					secretName = secretName || strings.Contains(strings.ToLower(name), w)
				}
				if secretName && f.Tag.Get("secret") != "true" {
					t.Errorf("%s looks like a secret but is not tagged secret:\"true\"", p)
				}
				walk(p, f.Type)
			}
		case reflect.Slice, reflect.Pointer:
			walk(path+"[]", typ.Elem())
		}
	}
	walk("", reflect.TypeFor[Config]())
}

func FuzzSet(f *testing.F) {
	f.Add("smtp.max_message_size", "1000000")
	f.Add("smtp.max_message_size", "5")
	f.Add("hostname", "mail.example.test")
	f.Add("hostname", "nodot")
	f.Add("pop3.trusted_networks", "10.0.0.0/8,")
	f.Add("pop3.trusted_networks", "0.0.0.0/0")
	f.Add("smtp.idle_timeout", "5m")
	f.Add("delivery.give_up_after", "30s")
	f.Add("delivery.smarthost_password", "secret")
	f.Add("nbt.interfaces", "eth0, eth1")
	f.Add("postmaster", "bob")
	f.Add("users", "x")
	f.Fuzz(func(t *testing.T, key, value string) {
		c := Default()
		if err := c.AddDomain("example.test", ""); err != nil {
			t.Fatal(err)
		}
		c.Users = []User{{Name: "bob", Hash: fuzzHash}}
		before := string(c.Marshal())
		if err := c.Set(key, value); err != nil {
			// A refused Set changes nothing.
			if string(c.Marshal()) != before {
				t.Fatalf("Set(%q, %q) failed (%v) but changed the config", key, value, err)
			}
			return
		}
		// A Set that succeeds on a valid config leaves it valid...
		if errs := c.Validate(); len(errs) > 0 {
			t.Fatalf("Set(%q, %q) made the config invalid: %v", key, value, errs)
		}
		// ...and it is written and read back the same.
		c2, err := Parse(c.Marshal())
		if err != nil {
			t.Fatalf("Set(%q, %q): the saved config does not load: %v", key, value, err)
		}
		if string(c2.Marshal()) != string(c.Marshal()) {
			t.Fatalf("Set(%q, %q): round trip changed the config", key, value)
		}
		// What get prints, set takes back unchanged (secrets excepted).
		v, err := c.Get(key)
		if err != nil {
			t.Fatalf("Set(%q) succeeded but Get fails: %v", key, err)
		}
		if v == Hidden {
			return
		}
		after := string(c.Marshal())
		if err := c.Set(key, v); err != nil || string(c.Marshal()) != after {
			t.Fatalf("Set(%q, Get = %q) changed the config (err %v)", key, v, err)
		}
	})
}

// fuzzHash is a valid password hash made once (hashing is slow).
var fuzzHash = HashPassword("correct horse")

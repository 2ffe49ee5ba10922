package appliance

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"concierge/appliance/config"
	"concierge/internal/mailaddr"
	"concierge/smtpd/srs"
)

// The settings reach smtpd/route whole (its own tests cover the policy).
func TestDirectoryFromSettings(t *testing.T) {
	c := config.Default()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.AddDomain("example.test", ""))
	must(c.AddDomain("example.net", "example.test"))
	must(c.AddUser("bob", "correct horse"))
	must(c.AddUser("alice", "battery staple"))
	must(c.AddAlias("team@example.test", []string{"alice", "partner@remote.test"}))
	dataDir := t.TempDir()
	key, err := srs.LoadKey(filepath.Join(dataDir, "srs.key"))
	must(err)
	env := &Env{DataDir: dataDir, Users: NewUsers(c), SRSKey: key}
	d := newDirectory(env, c)
	for addr, want := range map[string]string{
		"BOB@example.net":         "[bob] []",
		"team@example.test":       "[alice] [partner@remote.test]",
		"postmaster@example.test": "[bob] []", // the first user by default
	} {
		a, _ := mailaddr.Parse(addr)
		users, remote, ok := d.Lookup(a)
		slices.Sort(users)
		if got := strings.Join([]string{strings.Join(users, " "), strings.Join(remote, " ")}, "|"); !ok || "["+strings.ReplaceAll(got, "|", "] [")+"]" != want {
			t.Errorf("Lookup(%s) = %v %v %v, want %s", addr, users, remote, ok, want)
		}
	}
	if md := d.Maildir("bob"); md != env.MailDir("bob") {
		t.Errorf("Maildir(bob) = %s, want %s", md, env.MailDir("bob"))
	}
	// SRS with the box's key at the primary domain.
	fwd := d.ForwardSender("stranger@faraway.test")
	a, _ := mailaddr.Parse(fwd)
	if _, remote, ok := d.Lookup(a); !ok || a.Domain != "example.test" || len(remote) != 1 || remote[0] != "stranger@faraway.test" {
		t.Errorf("SRS address %s: %v %v", fwd, remote, ok)
	}
}

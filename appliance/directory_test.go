package appliance

import (
	"slices"
	"testing"

	"concierge/appliance/config"
	"concierge/internal/mailaddr"
)

func testDirectory(t *testing.T) *directory {
	t.Helper()
	c := config.Default()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.AddDomain("example.test", ""))
	must(c.AddDomain("example.net", "example.test"))
	must(c.AddDomain("other.test", ""))
	must(c.AddUser("bob", "correct horse"))
	must(c.AddUser("alice", "battery staple"))
	must(c.AddAlias("sales@other.test", []string{"alice", "bob", "partner@remote.test"}))
	must(c.AddAlias("team@example.test", []string{"sales@other.test", "bob"}))
	must(c.AddAlias("@other.test", []string{"alice"}))
	must(c.AddAlias("loop1@example.test", []string{"loop2@example.test"}))
	must(c.AddAlias("loop2@example.test", []string{"loop1@example.test"}))
	env := &Env{DataDir: t.TempDir(), Users: NewUsers(c)}
	return newDirectory(env, c)
}

func TestLookup(t *testing.T) {
	d := testDirectory(t)
	for _, tc := range []struct {
		addr   string
		users  []string
		remote []string
		ok     bool
	}{
		{"bob@example.test", []string{"bob"}, nil, true},
		{"BOB@example.net", []string{"bob"}, nil, true},
		{"bob@other.test", []string{"alice"}, nil, true}, // users live at the primary domain; catch-all here
		{"nobody@example.test", nil, nil, false},
		{"postmaster@other.test", []string{"bob"}, nil, true},
		{"Postmaster@example.net", []string{"bob"}, nil, true},
		{"sales@other.test", []string{"alice", "bob"}, []string{"partner@remote.test"}, true},
		{"team@example.test", []string{"alice", "bob"}, []string{"partner@remote.test"}, true},
		{"loop1@example.test", nil, nil, false},
	} {
		a, err := mailaddr.Parse(tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		users, remote, ok := d.Lookup(a)
		slices.Sort(users)
		if ok != tc.ok || !slices.Equal(users, tc.users) || !slices.Equal(remote, tc.remote) {
			t.Errorf("Lookup(%s) = %v %v %v; want %v %v %v", tc.addr, users, remote, ok, tc.users, tc.remote, tc.ok)
		}
	}
}

func TestCanSendAs(t *testing.T) {
	d := testDirectory(t)
	for addr, want := range map[string]bool{
		"bob@example.test":   true,
		"bob@example.net":    true,
		"team@example.test":  true,
		"sales@other.test":   true,
		"alice@example.test": false,
		"bob@other.test":     false,
	} {
		a, _ := mailaddr.Parse(addr)
		if got := d.CanSendAs("bob", a); got != want {
			t.Errorf("CanSendAs(bob, %s) = %v, want %v", addr, got, want)
		}
	}
}

package appliance

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"concierge/appliance/config"
	"concierge/internal/authlimit"
	"concierge/internal/pwhash"
)

func loginConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Default()
	for _, err := range []error{
		c.AddDomain("example.test", ""),
		c.AddDomain("example.net", "example.test"),
		c.AddDomain("other.test", ""),
		c.AddUser("bob", "correct horse"),
		c.AddUser("alice", "battery staple"),
		c.AddAlias("b.smith@example.test", []string{"bob"}),
		c.AddAlias("boss@example.test", []string{"b.smith@example.test"}),
		c.AddAlias("sales@other.test", []string{"alice", "bob"}),
		c.AddAlias("team@example.test", []string{"bob", "partner@remote.test"}),
		c.AddAlias("@other.test", []string{"alice"}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Issue 9 item 13: a login is a user's name or any address that reaches
// that user alone.
func TestLoginUser(t *testing.T) {
	c := loginConfig(t)
	isUser := func(n string) bool { return c.User(n) != nil }
	lookup := newDirectory(nil, c).Lookup
	for login, want := range map[string]string{
		"bob":                          "bob",
		"alice":                        "alice",
		"bob@example.test":             "bob",
		"BOB@Example.NET":              "bob",   // domain alias, any case
		"b.smith@example.test":         "bob",   // alias of bob alone
		"b.smith@example.net":          "bob",   // the alias at the alias domain
		"boss@example.test":            "bob",   // through two aliases
		"postmaster@other.test":        "bob",   // the postmaster (the first user)
		"anyone@other.test":            "alice", // a catch-all of one user
		"bob@other.test":               "alice", // which is not bob's
		"Bob":                          "",      // names are exact
		"ghost":                        "",
		"ghost@example.test":           "",
		"sales@other.test":             "", // two users
		"team@example.test":            "", // a user and a remote address
		"bob@remote.test":              "", // not a local domain
		"bob%remote.test@example.test": "",
		"@example.test":                "",
		"":                             "",
	} {
		if got := loginUser(login, isUser, lookup); got != want {
			t.Errorf("loginUser(%q) = %q, want %q", login, got, want)
		}
	}
}

// Issue 9 items 2 and 13: Authenticate resolves the login, refuses up
// front (no hash) while the user's key or the shared key of unknown names
// backs off, and spends a hash on an unknown name as on a wrong password.
func TestAuthenticate(t *testing.T) {
	u := NewUsers(loginConfig(t))
	u.Limits = &authlimit.Limiter{Base: time.Hour, Max: time.Hour}
	u.Hashes = pwhash.NewGate(2, time.Minute)
	ctx := context.Background()
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for _, c := range []struct {
		login, password, ip string
		user                string
		err                 error
		hashes              uint64
	}{
		{"bob@example.net", "correct horse", "10.0.1.1", "bob", nil, 1},
		{"alice", "battery staple", "10.0.2.1", "alice", nil, 1},
		{"b.smith@example.test", "wrong", "10.0.3.1", "", authlimit.ErrBadCredentials, 1},
		// bob's key backs off: refused before any hash, from anywhere,
		// whatever name he is given by.
		{"bob", "correct horse", "10.0.4.1", "", authlimit.ErrTryLater, 0},
		{"boss@example.test", "correct horse", "2001:db8::1", "", authlimit.ErrTryLater, 0},
		// An unknown name costs a hash, then every unknown name waits.
		{"ghost", "x", "10.0.5.1", "", authlimit.ErrBadCredentials, 1},
		{"nobody@example.test", "x", "10.0.6.1", "", authlimit.ErrTryLater, 0},
		// The guessing network waits too, for any user.
		{"alice@example.test", "battery staple", "10.0.3.99", "", authlimit.ErrTryLater, 0},
		{"alice@example.test", "battery staple", "10.0.7.1", "alice", nil, 1},
	} {
		before := u.Hashes.Checks()
		user, err := u.Authenticate(ctx, c.login, c.password, ip(c.ip))
		if user != c.user || !errors.Is(err, c.err) || c.err == nil && err != nil {
			t.Errorf("Authenticate(%q, %q, %s) = %q, %v; want %q, %v", c.login, c.password, c.ip, user, err, c.user, c.err)
		}
		if n := u.Hashes.Checks() - before; n != c.hashes {
			t.Errorf("Authenticate(%q, %s): %d hashes, want %d", c.login, c.ip, n, c.hashes)
		}
	}
}

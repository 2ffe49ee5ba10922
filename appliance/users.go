package appliance

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"

	"concierge/appliance/config"
	"concierge/internal/authlimit"
	"concierge/internal/mailaddr"
	"concierge/internal/pwhash"
)

// Users checks logins against the live configuration; the supervisor
// swaps the configuration in on every reload. It is the one login check
// of every service, so a guesser gains nothing by switching from SMTP to
// POP3 (or, later, to the setup page).
type Users struct {
	cfg atomic.Pointer[config.Config]
	// Limits slows down guessing (default: authlimit's defaults).
	Limits *authlimit.Limiter
	// Hashes bounds the password checks running at once (default:
	// pwhash.Default, shared by the whole process).
	Hashes *pwhash.Gate
}

// NewUsers returns a Users over cfg.
func NewUsers(cfg *config.Config) *Users {
	u := &Users{Limits: &authlimit.Limiter{}, Hashes: pwhash.Default}
	u.cfg.Store(cfg)
	return u
}

func (u *Users) set(cfg *config.Config) { u.cfg.Store(cfg) }

// Authenticate checks the password of a login from the client at ip. The
// login is a user's name or any address that reaches that user alone
// (see loginUser). It returns the user, or an error matching
// authlimit.ErrBadCredentials (wrong password or no such user: the same
// time is spent on both) or authlimit.ErrTryLater (refused for now).
func (u *Users) Authenticate(ctx context.Context, login, password string, ip netip.Addr) (string, error) {
	cfg := u.cfg.Load()
	name := loginUser(login, func(n string) bool { return cfg.User(n) != nil }, newDirectory(nil, cfg).Lookup)
	var hash string
	if usr := cfg.User(name); usr != nil {
		hash = usr.Hash
	}
	err := u.Limits.Attempt(ctx, ip, name, func(ctx context.Context, suspect bool) (bool, error) {
		return u.verify(ctx, suspect, hash, password)
	})
	if err != nil {
		return "", err
	}
	return name, nil
}

// CheckHash checks a password against hash for a login that is not a
// mail user's (the setup page's admin), through the same limiter and
// bounded hashing as the mail logins. It returns nil or an error as
// Authenticate does.
func (u *Users) CheckHash(ctx context.Context, login, hash, password string, ip netip.Addr) error {
	return u.Limits.Attempt(ctx, ip, login, func(ctx context.Context, suspect bool) (bool, error) {
		return u.verify(ctx, suspect, hash, password)
	})
}

func (u *Users) verify(ctx context.Context, suspect bool, hash, password string) (bool, error) {
	prio := pwhash.Normal
	if suspect {
		prio = pwhash.Suspect // clean logins go first
	}
	// An empty hash costs a check too (pwhash.Gate.Verify).
	return u.Hashes.Verify(ctx, prio, hash, password)
}

// loginUser returns the user a login name stands for, or "" when it
// stands for none: the name of a user, or an address that lookup resolves
// to exactly that one local user and to nothing else (the user's own
// addresses at the primary domain and its alias domains, aliases that
// reach only the user, a catch-all of one user). Many mail programs log in
// with the full address.
func loginUser(login string, isUser func(string) bool, lookup func(mailaddr.Address) (users, remote []string, ok bool)) string {
	if !strings.Contains(login, "@") {
		if isUser(login) {
			return login
		}
		return ""
	}
	a, err := mailaddr.Parse(login)
	if err != nil || a.RelayTrick() {
		return ""
	}
	users, remote, ok := lookup(a)
	if !ok || len(users) != 1 || len(remote) != 0 || !isUser(users[0]) {
		return ""
	}
	return users[0]
}

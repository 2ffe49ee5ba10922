// Package authlimit slows down password guessing. Every login attempt of
// every service (SMTP AUTH, POP3, the setup page) counts against two
// keys: the client's network (its /24 for IPv4, its /64 for IPv6: one
// host rarely has only one address of those) and the user it is for.
// After a failure a key backs off: the next attempt on it is refused up
// front, before any password hash runs, until a delay has passed that
// doubles with each failure up to a maximum; and while it backs off, only
// one attempt at a time gets through. A key is forgotten a while after
// its last failure; a success forgets the user's failures (not the
// network's, or a guesser could reset it with an account of its own).
//
// The limiter never fails open. User keys exist only for real users:
// every name that is not a user shares one key, so made-up names neither
// fill memory nor escape the delay. Network keys are bounded in number;
// when the table is full the entry with the fewest failures (the oldest
// of those) goes first, so a flood of addresses with one failure each
// cannot push out a key that is guessing. And since every failure needs
// an attempt that the user's (or the unknown names') key let through,
// failures cannot come faster than those few keys allow.
//
// A consequence: while the shared key of unknown names backs off, a
// guesser can tell names that are users (checked) from names that are
// not (refused). Login names are mail addresses, which are not secret.
package authlimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Defaults for a Limiter's fields.
const (
	DefaultBase   = time.Second
	DefaultMax    = 16 * time.Second
	DefaultWindow = 15 * time.Minute
	DefaultSize   = 10000
)

// The networks a client address is counted in.
const (
	IPv4Prefix = 24
	IPv6Prefix = 64
)

// Errors of Attempt.
var (
	// ErrBadCredentials: the password was checked and is wrong, or the
	// user does not exist.
	ErrBadCredentials = errors.New("authlimit: invalid user name or password")
	// ErrTryLater: the attempt was not checked, because one of its keys
	// backs off or because the check could not run now (too many at
	// once). Servers answer it as a temporary failure.
	ErrTryLater = errors.New("authlimit: login refused for now, try again later")
)

// Limiter remembers failed logins. The zero value uses the defaults.
type Limiter struct {
	Base   time.Duration // back-off after the first failure
	Max    time.Duration // longest back-off
	Window time.Duration // a key is forgotten this long after its last failure
	Size   int           // entries per table (networks, users)

	now func() time.Time // the clock; tests set it

	mu    sync.Mutex
	nets  table[netip.Prefix]
	users table[string]
}

type entry struct {
	fails int
	last  time.Time // of the last failure
	until time.Time // attempts before this are refused
}

func (l *Limiter) params() (base, max, window time.Duration, size int) {
	base, max, window, size = l.Base, l.Max, l.Window, l.Size
	if base <= 0 {
		base = DefaultBase
	}
	if max <= 0 {
		max = DefaultMax
	}
	if window <= 0 {
		window = DefaultWindow
	}
	if size <= 0 {
		size = DefaultSize
	}
	return
}

func (l *Limiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// delay is the back-off after fails failures.
func (l *Limiter) delay(fails int) time.Duration {
	base, max, _, _ := l.params()
	return min(base<<min(fails-1, 20), max)
}

// Network is the key of a client address: its /24 or /64.
func Network(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := IPv6Prefix
	if ip.Is4() {
		bits = IPv4Prefix
	}
	p, _ := ip.Prefix(bits) // the zero Addr gives the zero Prefix: one shared key
	return p
}

// Attempt runs one login attempt of the client at ip for user, which must
// be the name of an existing user, or "" for any name that is not one.
// It returns ErrTryLater without calling check while a key backs off;
// otherwise it calls check, which reports whether the password is right
// (an error from it, such as too many checks at once, is ErrTryLater
// too), records the result and returns nil or ErrBadCredentials. check
// learns whether a key of the attempt has failed recently (suspect), so
// that it can let other checks go first.
func (l *Limiter) Attempt(ctx context.Context, ip netip.Addr, user string, check func(ctx context.Context, suspect bool) (bool, error)) error {
	net := Network(ip)
	wait, suspect := l.begin(net, user)
	if wait > 0 {
		return fmt.Errorf("%w (in %v)", ErrTryLater, wait.Round(time.Second))
	}
	ok, err := check(ctx, suspect)
	switch {
	case err != nil:
		l.end(net, user, false, false)
		return fmt.Errorf("%w: %w", ErrTryLater, err)
	case !ok:
		l.end(net, user, true, false)
		return ErrBadCredentials
	}
	l.end(net, user, true, true)
	return nil
}

// Backoff is how long an attempt of the client at ip for user would be
// refused; 0 when it would go ahead.
func (l *Limiter) Backoff(ip netip.Addr, user string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait, _, _ := l.keys(Network(ip), user)
	return wait
}

// keys returns the entries of an attempt and how long they still back
// off.
func (l *Limiter) keys(net netip.Prefix, user string) (wait time.Duration, en, eu *entry) {
	now := l.clock()
	_, _, window, _ := l.params()
	en, eu = l.nets.get(net, now, window), l.users.get(user, now, window)
	for _, e := range []*entry{en, eu} {
		if e != nil && now.Before(e.until) {
			wait = max(wait, e.until.Sub(now))
		}
	}
	return wait, en, eu
}

// begin refuses an attempt while a key backs off (returning how long),
// and otherwise lets it go ahead: a key that has failed before lets no
// other attempt through until this one is decided. suspect reports
// whether a key has failed recently.
func (l *Limiter) begin(net netip.Prefix, user string) (wait time.Duration, suspect bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait, en, eu := l.keys(net, user)
	if wait > 0 {
		return wait, true
	}
	now := l.clock()
	for _, e := range []*entry{en, eu} {
		if e != nil {
			e.until = now.Add(l.delay(e.fails))
			suspect = true
		}
	}
	return 0, suspect
}

// end records the result of an attempt that begin let through: a failure
// when checked && !ok, a success when ok; an attempt that was not checked
// only gives back its turn.
func (l *Limiter) end(net netip.Prefix, user string, checked, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	_, _, window, size := l.params()
	if checked && !ok {
		for _, e := range []*entry{l.nets.put(net, now, window, size), l.users.put(user, now, window, size)} {
			e.fails++
			e.last = now
			e.until = now.Add(l.delay(e.fails))
		}
		return
	}
	if ok {
		l.users.del(user)
	}
	for _, e := range []*entry{l.nets.get(net, now, window), l.users.get(user, now, window)} {
		if e != nil {
			e.until = e.last.Add(l.delay(e.fails))
		}
	}
}

// table is a bounded map of entries.
type table[K comparable] struct{ m map[K]*entry }

// get returns k's entry, or nil when there is none or it has expired.
func (t *table[K]) get(k K, now time.Time, window time.Duration) *entry {
	e := t.m[k]
	if e != nil && now.Sub(e.last) > window {
		delete(t.m, k)
		return nil
	}
	return e
}

// put returns k's entry, making one when there is none. A full table
// first drops what has expired, then the entry with the fewest failures,
// the oldest among those.
func (t *table[K]) put(k K, now time.Time, window time.Duration, size int) *entry {
	if e := t.get(k, now, window); e != nil {
		return e
	}
	if t.m == nil {
		t.m = map[K]*entry{}
	}
	if len(t.m) >= size {
		for k, e := range t.m {
			if now.Sub(e.last) > window {
				delete(t.m, k)
			}
		}
	}
	for len(t.m) >= size {
		var victim K
		var ve *entry
		for k, e := range t.m {
			if ve == nil || e.fails < ve.fails || e.fails == ve.fails && e.last.Before(ve.last) {
				victim, ve = k, e
			}
		}
		delete(t.m, victim)
	}
	e := &entry{}
	t.m[k] = e
	return e
}

func (t *table[K]) del(k K) { delete(t.m, k) }

func (t *table[K]) len() int { return len(t.m) }

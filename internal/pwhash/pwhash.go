// Package pwhash hashes and checks passwords, and bounds how many checks
// run at once.
//
// New hashes are argon2id (RFC 9106) in the PHC string form
// ("$argon2id$v=19$m=...,t=...,p=...$salt$key"); bcrypt hashes are read
// too. An argon2id check allocates its whole memory parameter (19 MiB
// here): a Gate lets only a few run at a time, so that many clients trying
// passwords at once cannot take a box of 128 MB out of memory. A check
// that waits too long for its turn fails with ErrBusy, which a server
// answers as a temporary failure.
package pwhash

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// argon2id parameters of new hashes: RFC 9106's second recommended option
// scaled to a small box (19 MiB, 2 passes, one lane), as OWASP suggests.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// Limits on the parameters of hashes that are read (a hash in the
// settings may come from elsewhere): a check must fit the memory that
// Gate's slots are sized for.
const (
	MaxMemory  = 32 * 1024 // KiB per check
	maxTime    = 10
	maxThreads = 4
)

// DefaultQueueTimeout is how long a check waits for a free slot before it
// fails with ErrBusy.
const DefaultQueueTimeout = 5 * time.Second

// ErrBusy is returned by a check that found no free slot in time.
var ErrBusy = errors.New("pwhash: too many password checks at once")

// Priority orders the checks that wait for a slot.
type Priority int

// Priorities.
const (
	// Normal checks wait in turn.
	Normal Priority = iota
	// Suspect checks (their client or user failed recently) get a slot
	// only when no Normal check waits: a flood of guesses cannot keep a
	// user with a clean record from logging in.
	Suspect
)

// Gate bounds how many password checks run at once.
type Gate struct {
	slots   int
	timeout time.Duration
	checks  atomic.Uint64

	mu      sync.Mutex
	inUse   int
	waiting [2][]chan struct{} // by Priority; only while every slot is in use
	// held, when set (tests), runs while a slot is held, before the hash.
	held func(Priority)
}

// NewGate returns a gate that runs at most slots checks at once; a check
// waits at most queueTimeout for a slot.
func NewGate(slots int, queueTimeout time.Duration) *Gate {
	return &Gate{slots: max(slots, 1), timeout: queueTimeout}
}

// Default is the gate of every password check in the process: one slot
// per CPU, which keeps the CPUs busy and the memory of checks at about
// 19 MiB per CPU.
var Default = NewGate(runtime.NumCPU(), DefaultQueueTimeout)

// Slots is the number of checks that may run at once.
func (g *Gate) Slots() int { return g.slots }

// Checks counts the hashes computed through the gate (checks, dummy
// checks and new hashes).
func (g *Gate) Checks() uint64 { return g.checks.Load() }

// acquire takes a slot, waiting at most the queue timeout (no limit when
// wait is false) or until ctx is done.
func (g *Gate) acquire(ctx context.Context, p Priority, wait bool) error {
	g.mu.Lock()
	if g.inUse < g.slots {
		g.inUse++
		g.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	g.waiting[p] = append(g.waiting[p], ready)
	g.mu.Unlock()
	var expired <-chan time.Time
	if wait {
		t := time.NewTimer(g.timeout)
		defer t.Stop()
		expired = t.C
	}
	var err error
	select {
	case <-ready:
		return nil
	case <-expired:
		err = ErrBusy
	case <-ctx.Done():
		err = ctx.Err()
	}
	g.mu.Lock()
	q := g.waiting[p]
	if i := slices.Index(q, ready); i >= 0 {
		g.waiting[p] = slices.Delete(q, i, i+1)
		g.mu.Unlock()
		return err
	}
	g.mu.Unlock()
	// The slot was handed over just as the wait ended: pass it on.
	g.release()
	return err
}

// release hands the slot to the first waiting check of the highest
// priority, or frees it; it reports whether no check runs any more.
func (g *Gate) release() (idle bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, q := range g.waiting {
		if len(q) > 0 {
			close(q[0])
			g.waiting[p] = q[1:]
			return false
		}
	}
	g.inUse--
	return g.inUse == 0
}

// do runs f holding a slot.
func (g *Gate) do(ctx context.Context, p Priority, wait bool, f func()) error {
	if err := g.acquire(ctx, p, wait); err != nil {
		return err
	}
	defer func() {
		if g.release() {
			// No check runs: hand the checks' pages back to the
			// kernel now. Left to the runtime's scavenger they stay
			// for minutes, and the box's memory after a login would
			// be its serving memory plus 19 MiB per slot used.
			debug.FreeOSMemory()
		}
	}()
	if g.held != nil {
		g.held(p)
	}
	g.checks.Add(1)
	f()
	// The check's memory is garbage now: collect it before the slot
	// goes to the next check, so that at most one check's memory per
	// slot exists at any time. Left to the pacer, the heap would grow
	// to twice the checks in flight and more (over 130 MB with two
	// slots under a flood); a collection of a heap that is mostly
	// pointer-free argon2 blocks costs little next to a check.
	runtime.GC()
	return nil
}

// Hash returns a new argon2id hash of pw. It waits for a slot as long as
// it takes.
func (g *Gate) Hash(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	var key []byte
	g.do(context.Background(), Normal, false, func() {
		key = argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	})
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// dummySalt salts the check that stands in for a missing hash.
var dummySalt = []byte("concierge-dummy!")

// Verify reports whether pw matches hash h. An empty or unreadable h
// costs the time of a check and reports false, so that an unknown user
// takes as long to refuse as a wrong password. The error is ErrBusy or
// ctx's error when the check did not run.
func (g *Gate) Verify(ctx context.Context, prio Priority, h, pw string) (bool, error) {
	var ok bool
	if isBcrypt(h) {
		err := g.do(ctx, prio, true, func() {
			ok = bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil
		})
		return ok, err
	}
	t, m, p, salt, key, err := parseArgon(h)
	if err != nil {
		err := g.do(ctx, prio, true, func() {
			argon2.IDKey([]byte(pw), dummySalt, argonTime, argonMemory, argonThreads, argonKeyLen)
		})
		return false, err
	}
	err = g.do(ctx, prio, true, func() {
		got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(key)))
		ok = subtle.ConstantTimeCompare(got, key) == 1
	})
	return ok, err
}

// Verify checks pw against h through the Default gate.
func Verify(ctx context.Context, h, pw string) (bool, error) {
	return Default.Verify(ctx, Normal, h, pw)
}

// Hash hashes pw through the Default gate.
func Hash(pw string) string { return Default.Hash(pw) }

// IsHash reports whether h is a hash Verify reads.
func IsHash(h string) bool {
	if isBcrypt(h) {
		_, err := bcrypt.Cost([]byte(h))
		return err == nil
	}
	_, _, _, _, _, err := parseArgon(h)
	return err == nil
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

func parseArgon(h string) (t, m uint32, p uint8, salt, key []byte, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return 0, 0, 0, nil, nil, errors.New("pwhash: not an argon2id hash")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return 0, 0, 0, nil, nil, fmt.Errorf("pwhash: argon2id parameters: %w", err)
	}
	if t < 1 || t > maxTime || m < 8 || m > MaxMemory || p < 1 || p > maxThreads {
		return 0, 0, 0, nil, nil, fmt.Errorf("pwhash: argon2id parameters out of range (at most %d KiB, %d passes, %d lanes)", MaxMemory, maxTime, maxThreads)
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return 0, 0, 0, nil, nil, errors.New("pwhash: bad salt")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return 0, 0, 0, nil, nil, errors.New("pwhash: bad key")
	}
	return t, m, p, salt, key, nil
}

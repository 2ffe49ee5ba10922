package netif

import (
	"errors"
	"net/netip"
	"sync"
	"time"
)

// DefaultRollbackAfter is how long a change that would cut the admin off
// waits for the admin to confirm it from the new address before it is
// undone by itself.
const DefaultRollbackAfter = 60 * time.Second

// Errors of the trial.
var (
	ErrTrialPending = errors.New("netif: a network change is waiting for confirmation; confirm it or wait until it is undone")
	ErrNoTrial      = errors.New("netif: no network change is waiting for confirmation")
	ErrWrongAddress = errors.New("netif: confirm from the new address")
)

// Clock is the time a Trial runs on; tests give a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; the stop function
	// it returns keeps f from being called if it was not yet.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Change is a change of one interface's address on trial.
type Change struct {
	Link string       `json:"link"`
	Old  netip.Prefix `json:"old"` // kept until the change is confirmed
	New  netip.Prefix `json:"new"`
	// Deadline is when it is undone unless confirmed.
	Deadline time.Time `json:"deadline"`
}

// Trial holds at most one change on trial. The zero value uses the real
// clock and is ready to use.
type Trial struct {
	Clock Clock

	mu   sync.Mutex
	cur  *Change
	stop func() bool
}

func (t *Trial) clock() Clock {
	if t.Clock == nil {
		return realClock{}
	}
	return t.Clock
}

// Begin puts c on trial for d: unless Confirm is called first, the trial
// ends after d and rollback runs (in a goroutine of its own) to undo it.
func (t *Trial) Begin(c Change, d time.Duration, rollback func(Change)) (Change, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		return *t.cur, ErrTrialPending
	}
	clk := t.clock()
	c.Deadline = clk.Now().Add(d)
	cur := &c
	t.cur = cur
	t.stop = clk.AfterFunc(d, func() {
		t.mu.Lock()
		mine := t.cur == cur
		if mine {
			t.cur, t.stop = nil, nil
		}
		t.mu.Unlock()
		if mine {
			rollback(*cur)
		}
	})
	return c, nil
}

// Confirm makes the change on trial final. from is the address the
// confirmation came in on: it must be the new one, which proves the admin
// reaches the box there (an invalid from, as from the box's own console,
// is taken as well).
func (t *Trial) Confirm(from netip.Addr) (Change, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		return Change{}, ErrNoTrial
	}
	if from.IsValid() && from.Unmap() != t.cur.New.Addr() {
		return *t.cur, ErrWrongAddress
	}
	c := *t.cur
	t.stop()
	t.cur, t.stop = nil, nil
	return c, nil
}

// Cancel ends a trial without rolling it back (its change was never
// applied).
func (t *Trial) Cancel() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		t.stop()
		t.cur, t.stop = nil, nil
	}
}

// Pending returns the change on trial, if any.
func (t *Trial) Pending() (Change, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		return Change{}, false
	}
	return *t.cur, true
}

// Keep returns the addresses link keeps beside its own while a change of
// it is on trial.
func (t *Trial) Keep(link string) []netip.Prefix {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil || t.cur.Link != link || t.cur.Old == t.cur.New {
		return nil
	}
	return []netip.Prefix{t.cur.Old}
}

package authlimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newLimiter(size int) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	return &Limiter{Base: time.Second, Max: 8 * time.Second, Window: time.Hour, Size: size, now: c.now}, c
}

// guesser counts the password hashes its checks run.
type guesser struct{ hashes int }

func (g *guesser) try(l *Limiter, ip, user string, right bool) error {
	return l.Attempt(context.Background(), netip.MustParseAddr(ip), user, func(context.Context, bool) (bool, error) {
		g.hashes++
		return right, nil
	})
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	l, clock := newLimiter(0)
	var g guesser
	for i, want := range []time.Duration{1, 2, 4, 8, 8} {
		if err := g.try(l, "10.0.0.1", "bob", false); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		if d := l.Backoff(netip.MustParseAddr("10.0.0.1"), "bob"); d != want*time.Second {
			t.Errorf("after %d failures: back-off %v, want %v", i+1, d, want*time.Second)
		}
		// Refused up front while backing off: no hash runs.
		before := g.hashes
		if err := g.try(l, "10.0.0.1", "bob", true); !errors.Is(err, ErrTryLater) {
			t.Errorf("attempt while backing off: %v, want ErrTryLater", err)
		}
		// The user's key backs off from any address.
		if err := g.try(l, "192.168.7.7", "bob", true); !errors.Is(err, ErrTryLater) {
			t.Errorf("attempt for the user from elsewhere: %v, want ErrTryLater", err)
		}
		if g.hashes != before {
			t.Errorf("%d hashes ran for refused attempts", g.hashes-before)
		}
		clock.add(want * time.Second)
	}
	// A success forgets the user's failures, not the network's.
	if err := g.try(l, "192.168.7.7", "bob", true); err != nil {
		t.Fatalf("right password after the back-off: %v", err)
	}
	if err := g.try(l, "10.0.0.1", "alice", false); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if d := l.Backoff(netip.MustParseAddr("10.0.0.1"), ""); d != 8*time.Second {
		t.Errorf("network back-off after a success elsewhere: %v, want 8s", d)
	}
	if d := l.Backoff(netip.MustParseAddr("192.168.7.7"), "bob"); d != 0 {
		t.Errorf("user back-off after a success: %v", d)
	}
	// Keys are forgotten a window after their last failure.
	clock.add(time.Hour + time.Second)
	if d := l.Backoff(netip.MustParseAddr("10.0.0.1"), "alice"); d != 0 {
		t.Errorf("back-off after the window: %v", d)
	}
}

// Addresses are counted by /24 and /64; names that are not users share
// one key.
func TestKeys(t *testing.T) {
	l, _ := newLimiter(0)
	var g guesser
	for _, c := range []struct {
		first, same, other string
	}{
		{"10.1.2.3", "10.1.2.254", "10.1.3.3"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:3::1"},
		{"::ffff:10.9.9.9", "10.9.9.1", "10.9.8.1"},
	} {
		g.try(l, c.first, "u-"+c.first, false)
		if d := l.Backoff(netip.MustParseAddr(c.same), "u-"+c.other); d == 0 {
			t.Errorf("%s is not counted with %s", c.same, c.first)
		}
		if d := l.Backoff(netip.MustParseAddr(c.other), "u-"+c.other); d != 0 {
			t.Errorf("%s is counted with %s", c.other, c.first)
		}
	}
	g.try(l, "172.16.0.1", "", false)
	if err := g.try(l, "172.17.0.1", "", false); !errors.Is(err, ErrTryLater) {
		t.Errorf("another unknown name from another network: %v, want ErrTryLater", err)
	}
}

// While a key that has failed is being checked, no other attempt on it
// gets through; a check that could not run gives its turn back.
func TestOneAttemptAtATimeWhileBackingOff(t *testing.T) {
	l, clock := newLimiter(0)
	var g guesser
	g.try(l, "10.0.0.1", "bob", false)
	clock.add(time.Second)
	err := l.Attempt(context.Background(), netip.MustParseAddr("10.0.0.2"), "bob", func(_ context.Context, suspect bool) (bool, error) {
		if !suspect {
			t.Error("an attempt on a key that failed is not suspect")
		}
		if err := g.try(l, "10.5.0.1", "bob", false); !errors.Is(err, ErrTryLater) {
			t.Errorf("second attempt during a check: %v", err)
		}
		return false, errors.New("busy")
	})
	if !errors.Is(err, ErrTryLater) {
		t.Errorf("check that could not run: %v", err)
	}
	if err := g.try(l, "10.5.0.1", "bob", true); err != nil {
		t.Errorf("after a check that did not run: %v", err)
	}
}

// Acceptance (issue 9 item 2): with a small table, a flood of addresses
// does not let a guessing address or user escape the back-off, and the
// table stays bounded.
func TestFloodDoesNotFailOpen(t *testing.T) {
	const size = 8
	l, clock := newLimiter(size)
	var g guesser
	for i := range 3 {
		clock.add(l.Backoff(netip.MustParseAddr("203.0.113.7"), "bob"))
		if err := g.try(l, "203.0.113.7", "bob", false); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	guessing := netip.MustParseAddr("203.0.113.7")
	// The flood: a thousand networks try bob and made-up names. Only the
	// first made-up name is checked; everything after it is refused up
	// front, bob's key backs off.
	g.hashes = 0
	for i := range 1000 {
		ip := fmt.Sprintf("10.%d.%d.1", i/256, i%256)
		g.try(l, ip, "bob", false)
		g.try(l, ip, "", false)
	}
	if g.hashes != 1 {
		t.Errorf("the flood ran %d hashes, want 1", g.hashes)
	}
	// Failures that got through some other way (over a long time):
	// networks with one failure each fill the table.
	for i := range 1000 {
		l.end(Network(netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i))), "", true, false)
	}
	if n := l.nets.len(); n > size {
		t.Errorf("%d network entries, limit %d", n, size)
	}
	if d := l.Backoff(guessing, "alice"); d == 0 {
		t.Error("the guessing address escaped its back-off")
	}
	if d := l.Backoff(netip.MustParseAddr("198.51.100.1"), "bob"); d == 0 {
		t.Error("the guessed user escaped its back-off")
	}
	if d := l.Backoff(netip.MustParseAddr("198.51.100.1"), ""); d == 0 {
		t.Error("unknown names escaped their back-off")
	}
	if err := g.try(l, "203.0.113.99", "bob", true); !errors.Is(err, ErrTryLater) {
		t.Errorf("attempt from the guessing network: %v", err)
	}
}

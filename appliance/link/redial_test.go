package link

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestRedialBackoff runs an on-demand manager on a simulated clock, one
// step a second, with outbound mail waiting all along and an up command
// that fails: the rounds of tries are 1, 2, 4, 8, 15 and 15 minutes
// apart; the admin's "Connect now" dials at once; after a link-up the
// pause starts over at 1 minute.
func TestRedialBackoff(t *testing.T) {
	ok := filepath.Join(t.TempDir(), "modem-answers")
	start := time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)
	now := start
	m := New(Settings{Mode: OnDemand, UpCommand: "test -e " + ok, Retries: 1, RetryWait: time.Nanosecond, IdleTime: time.Minute}, nil, nil)
	m.Now = func() time.Time { return now }
	ctx := context.Background()
	var dials []time.Duration // since start, of each failed round
	run := func(until time.Duration) {
		for ; now.Before(start.Add(until)); now = now.Add(time.Second) {
			m.MailWaiting()
			before := m.failed
			m.step(ctx)
			if m.failed > before {
				dials = append(dials, now.Sub(start))
			}
		}
	}
	run(46 * time.Minute)
	want := []time.Duration{0, time.Minute, 3 * time.Minute, 7 * time.Minute, 15 * time.Minute, 30 * time.Minute, 45 * time.Minute}
	if !slices.Equal(dials, want) {
		t.Fatalf("failed rounds at %v, want %v", dials, want)
	}

	// Connect now, in the middle of the 15-minute pause, dials at once.
	m.Want("asked by the admin")
	m.step(ctx)
	if m.failed != len(want)+1 {
		t.Fatalf("connect now did not dial during the pause (%d failed rounds)", m.failed)
	}

	// The modem answers: the next round after the pause brings the link
	// up, and the pause starts over.
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dials = nil
	run(46*time.Minute + 16*time.Minute)
	if !m.IsUp() || m.failed != 0 {
		t.Fatalf("the link did not come up after the pause: up %v, %d failed rounds", m.IsUp(), m.failed)
	}
	m.Hangup("test")
	m.step(ctx)
	if err := os.Remove(ok); err != nil {
		t.Fatal(err)
	}
	dials = nil
	from := now.Sub(start)
	run(from + 2*time.Minute)
	if len(dials) != 2 || dials[1]-dials[0] != time.Minute {
		t.Fatalf("after a link-up failed rounds at %v, want 1 minute apart", dials)
	}
}

// TestRedialSettings: the pause and its ceiling come from the settings
// (link.redial_wait, link.max_redial_wait): 10 s doubling to at most
// 30 s puts the failed rounds at 0, 10, 30, 60 and 90 s; with no
// retries (link.retries 0) each round dials once.
func TestRedialSettings(t *testing.T) {
	start := time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)
	now := start
	log := filepath.Join(t.TempDir(), "dials")
	m := New(Settings{Mode: OnDemand, UpCommand: "echo >>" + log + "; false", IdleTime: time.Minute,
		RedialWait: 10 * time.Second, MaxRedialWait: 30 * time.Second}, nil, nil)
	m.Now = func() time.Time { return now }
	var dials []time.Duration
	for ; now.Before(start.Add(100 * time.Second)); now = now.Add(time.Second) {
		m.MailWaiting()
		before := m.failed
		m.step(context.Background())
		if m.failed > before {
			dials = append(dials, now.Sub(start))
		}
	}
	want := []time.Duration{0, 10 * time.Second, 30 * time.Second, 60 * time.Second, 90 * time.Second}
	if !slices.Equal(dials, want) {
		t.Fatalf("failed rounds at %v, want %v", dials, want)
	}
	if b, err := os.ReadFile(log); err != nil || len(b) != len(want) {
		t.Errorf("%d dials in %d rounds without retries (%v)", len(b), len(want), err)
	}
}

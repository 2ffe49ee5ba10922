package timesync

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServers answers queries from a table; a server not in it times out.
type fakeServers struct {
	mu      sync.Mutex
	answers map[string]Sample
	asked   []string
	steps   []time.Duration
}

func (f *fakeServers) query(ctx context.Context, server string, _ time.Duration) (Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, server)
	if s, ok := f.answers[server]; ok {
		return s, nil
	}
	return Sample{}, errors.New("i/o timeout")
}

func (f *fakeServers) step(d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps = append(f.steps, d)
	return nil
}

func (f *fakeServers) set(server string, s Sample) {
	f.mu.Lock()
	f.answers[server] = s
	f.mu.Unlock()
}

// waitStatus waits for the status to satisfy cond (at every change).
func waitStatus(t *testing.T, s *Syncer, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := s.Changed()
		if st := s.Status(); cond(st) {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("status never got there: %+v", s.Status())
		}
	}
}

func start(t *testing.T, set Settings, f *fakeServers) *Syncer {
	s := New(set, nil)
	s.Query, s.Step = f.query, f.step
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// A round asks the servers in turn; with none answering it keeps the
// errors of each and tries again after a back-off that doubles; the first
// answer makes it synchronized. Offsets above the threshold step the
// clock only with SetClock.
func TestRoundsBackOffAndStep(t *testing.T) {
	f := &fakeServers{answers: map[string]Sample{}}
	set := Settings{Servers: []string{"a.test", "b.test"}, SetClock: true, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond}
	s := start(t, set, f)
	st := waitStatus(t, s, func(st Status) bool { return st.LastError != "" })
	if st.Synchronized || !strings.Contains(st.LastError, "a.test: i/o timeout") || !strings.Contains(st.LastError, "b.test: i/o timeout") {
		t.Fatalf("after a failed round: %+v", st)
	}
	f.set("b.test", Sample{Offset: 3 * time.Second, Stratum: 2, RTT: time.Millisecond})
	st = waitStatus(t, s, func(st Status) bool { return st.Synchronized })
	if st.Server != "b.test" || st.Stratum != 2 || st.OffsetNS != int64(3*time.Second) || st.LastError != "" || st.Stepped != "3s" || st.NextQuery.IsZero() {
		t.Errorf("synchronized: %+v", st)
	}
	f.mu.Lock()
	if len(f.steps) != 1 || f.steps[0] != 3*time.Second {
		t.Errorf("steps %v, want one of 3s", f.steps)
	}
	if len(f.asked) < 4 || f.asked[0] != "a.test" || f.asked[1] != "b.test" {
		t.Errorf("asked %v: want a failed round of both, then a retry", f.asked)
	}
	f.mu.Unlock()

	// Without SetClock, or under the threshold, the clock is left alone.
	for _, c := range []struct {
		setClock bool
		offset   time.Duration
	}{{false, 3 * time.Second}, {true, 100 * time.Millisecond}} {
		f := &fakeServers{answers: map[string]Sample{"a.test": {Offset: c.offset, Stratum: 3}}}
		s := start(t, Settings{Servers: []string{"a.test"}, SetClock: c.setClock}, f)
		st := waitStatus(t, s, func(st Status) bool { return st.Synchronized })
		if st.Stepped != "" || len(f.steps) != 0 || st.SetClock != c.setClock {
			t.Errorf("set clock %v, offset %v: stepped %v (%+v)", c.setClock, c.offset, f.steps, st)
		}
	}
}

// No servers: off, and nothing is asked until a server is set.
func TestOffUntilConfigured(t *testing.T) {
	f := &fakeServers{answers: map[string]Sample{"a.test": {Stratum: 1}}}
	s := start(t, Settings{}, f)
	if st := s.Status(); st.Enabled || st.Synchronized {
		t.Fatalf("off: %+v", st)
	}
	s.Configure(Settings{Servers: []string{"a.test"}})
	waitStatus(t, s, func(st Status) bool { return st.Synchronized && st.Enabled })
	s.Configure(Settings{})
	if st := s.Status(); st.Enabled || st.Synchronized {
		t.Fatalf("turned off: %+v", st)
	}
}

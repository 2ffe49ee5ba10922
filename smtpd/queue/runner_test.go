package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// tempErr is a temporary failure as a Sender reports it.
type tempErr struct{}

func (tempErr) Error() string   { return "451 4.3.0 try later" }
func (tempErr) Permanent() bool { return false }

// scripted answers each Send with the next result of its script and
// records when (by its clock) it was called.
type scripted struct {
	mu     sync.Mutex
	now    func() time.Time
	calls  []time.Time
	jobs   []*Job
	script []error
}

func (s *scripted) Send(ctx context.Context, j *Job) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	s.calls = append(s.calls, now)
	s.jobs = append(s.jobs, j)
	var err error
	if len(s.script) > 0 {
		err, s.script = s.script[0], s.script[1:]
	}
	out := make([]Result, len(j.Rcpts))
	for i := range out {
		out[i].Err = err
	}
	return out
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func testID(n int) string            { return fmt.Sprintf("1772442900.M%dP1Q%d.mail.example.test", n, n) }

func (s *scripted) n() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.calls) }

func enqueue(t *testing.T, q *Queue, env *Envelope) {
	t.Helper()
	if err := writeTestMessage(q, env); err != nil {
		t.Fatal(err)
	}
}

// The retry schedule is kept exactly: with an injected clock, every
// attempt happens at the moment the schedule names, and the last wait
// repeats.
func TestRunnerRetriesOnSchedule(t *testing.T) {
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	s := &scripted{now: clock.Now, script: []error{tempErr{}, tempErr{}, tempErr{}, nil}}
	set := DefaultSettings()
	set.Schedule = []time.Duration{time.Minute, 5 * time.Minute}
	var notices []Notice
	r := NewRunner(q, s, func(ctx context.Context, n Notice) error { notices = append(notices, n); return nil }, set, nil)
	r.Now = clock.Now
	attempts := make(chan Envelope, 10)
	r.finished = func(env Envelope) { attempts <- env }
	enqueue(t, q, &Envelope{ID: testID(1), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: start})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var next []time.Time
	for range 4 {
		select {
		case env := <-attempts:
			next = append(next, env.NextAttempt)
			if env.Recipients[0].State == Pending {
				clock.Set(env.NextAttempt) // the retry falls due
				r.poke()
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no attempt after %d", len(next))
		}
	}
	cancel()
	<-done
	want := []time.Time{start, start.Add(time.Minute), start.Add(6 * time.Minute), start.Add(11 * time.Minute)}
	if len(s.calls) != len(want) {
		t.Fatalf("%d attempts, want %d", len(s.calls), len(want))
	}
	for i, w := range want {
		if !s.calls[i].Equal(w) {
			t.Errorf("attempt %d at %v, want %v", i+1, s.calls[i].Sub(start), w.Sub(start))
		}
	}
	for i, w := range want[1:] {
		if !next[i].Equal(w) {
			t.Errorf("after attempt %d the next was set for %v, want %v", i+1, next[i].Sub(start), w.Sub(start))
		}
	}
	if ids, _ := q.List(); len(ids) != 0 {
		t.Errorf("delivered message left in the queue: %v", ids)
	}
	if len(notices) != 0 {
		t.Errorf("notices: %v", notices)
	}
}

type permErr struct{}

func (permErr) Error() string      { return "deliver: domain x accepts no mail" }
func (permErr) Permanent() bool    { return true }
func (permErr) Status() string     { return "5.1.10" }
func (permErr) Diagnostic() string { return "556 5.1.10 null MX" }

// A permanent failure is reported once, with the error's details, and the
// message is removed.
func TestRunnerReportsPermanentFailure(t *testing.T) {
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{script: []error{permErr{}}}
	var mu sync.Mutex
	var notices []Notice
	r := NewRunner(q, s, func(ctx context.Context, n Notice) error {
		mu.Lock()
		notices = append(notices, n)
		mu.Unlock()
		return nil
	}, DefaultSettings(), nil)
	enqueue(t, q, &Envelope{ID: testID(2), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ids, _ := q.List(); len(ids) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if len(notices) != 1 || notices[0].Kind != Failure || len(notices[0].Recipients) != 1 {
		t.Fatalf("notices: %+v", notices)
	}
	rc := notices[0].Recipients[0]
	if rc.LastError != "deliver: domain x accepts no mail" || rc.Status != "5.1.10" || rc.Diagnostic != "556 5.1.10 null MX" || rc.State != Failed {
		t.Errorf("recipient in the notice: %+v", rc)
	}
	if ids, _ := q.List(); len(ids) != 0 {
		t.Errorf("message left in the queue: %v", ids)
	}
}

// blocking holds every Send until its context ends.
type blocking struct{ started chan struct{} }

func (b blocking) Send(ctx context.Context, j *Job) []Result {
	b.started <- struct{}{}
	<-ctx.Done()
	out := make([]Result, len(j.Rcpts))
	for i := range out {
		out[i].Err = tempErr{}
	}
	return out
}

// Stopping with deliveries in flight and jobs waiting returns at once and
// leaves every message queued without a counted attempt.
func TestRunnerStopsPromptly(t *testing.T) {
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set := DefaultSettings()
	set.MaxConnsPerDomain = 1
	started := make(chan struct{}, 5)
	r := NewRunner(q, blocking{started}, nil, set, nil)
	for i := range 5 {
		enqueue(t, q, &Envelope{ID: testID(10 + i), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now()})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	<-started // one delivery in flight, four waiting for the domain's connection
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of cancel")
	}
	t.Logf("stopped in %v", time.Since(start))
	ids, _ := q.List()
	if len(ids) != 5 {
		t.Fatalf("%d messages left, want 5", len(ids))
	}
	for _, id := range ids {
		env, err := q.Load(id)
		if err != nil || env.Recipients[0].Attempts != 0 {
			t.Errorf("%s: %+v %v", id, env, err)
		}
	}
}

package queue

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// tempErr is a temporary failure as a Sender reports it.
type tempErr struct{}

func (tempErr) Error() string   { return "451 4.3.0 try later" }
func (tempErr) Permanent() bool { return false }

// scripted answers each Send with the next result of its script and
// records when it was called.
type scripted struct {
	mu     sync.Mutex
	calls  []time.Time
	script []error
}

func (s *scripted) Send(ctx context.Context, domain, from string, rcpts []string, body *io.SectionReader) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	var err error
	if len(s.script) > 0 {
		err, s.script = s.script[0], s.script[1:]
	}
	out := make([]error, len(rcpts))
	for i := range out {
		out[i] = err
	}
	return out
}

func (s *scripted) n() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.calls) }

func enqueue(t *testing.T, q *Queue, env *Envelope) {
	t.Helper()
	if err := writeTestMessage(q, env); err != nil {
		t.Fatal(err)
	}
}

func TestRunnerRetriesOnSchedule(t *testing.T) {
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{script: []error{tempErr{}, tempErr{}, tempErr{}, nil}}
	set := DefaultSettings()
	set.Schedule = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	var notices []Notice
	r := NewRunner(q, s, func(ctx context.Context, n Notice) error { notices = append(notices, n); return nil }, set, nil)
	enqueue(t, q, &Envelope{ID: "m1", From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now()})
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
	if s.n() != 4 {
		t.Fatalf("%d attempts, want 4", s.n())
	}
	for i, want := range []time.Duration{200, 400, 400} {
		gap := s.calls[i+1].Sub(s.calls[i])
		if gap < want*time.Millisecond || gap > want*time.Millisecond+150*time.Millisecond {
			t.Errorf("gap %d = %v, want %vms", i, gap, want)
		}
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
	enqueue(t, q, &Envelope{ID: "m2", From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now()})
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
type blocking struct{}

func (blocking) Send(ctx context.Context, domain, from string, rcpts []string, body *io.SectionReader) []error {
	<-ctx.Done()
	out := make([]error, len(rcpts))
	for i := range out {
		out[i] = tempErr{}
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
	r := NewRunner(q, blocking{}, nil, set, nil)
	for i := range 5 {
		enqueue(t, q, &Envelope{ID: fmt.Sprintf("s%d", i), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now()})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	time.Sleep(200 * time.Millisecond)
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

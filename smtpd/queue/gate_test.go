package queue

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// testGate is a gate the test opens per domain.
type testGate struct {
	mu        sync.Mutex
	open      map[string]bool
	waiting   chan []string
	attempted chan string
}

func (g *testGate) Open(d string) bool { g.mu.Lock(); defer g.mu.Unlock(); return g.open[d] }
func (g *testGate) set(d string, v bool) {
	g.mu.Lock()
	g.open[d] = v
	g.mu.Unlock()
}
func (g *testGate) Waiting(ds []string) {
	select {
	case g.waiting <- ds:
	default:
	}
}
func (g *testGate) Attempted(d string, delivered int, size int64) { g.attempted <- d }

// While the gate keeps a domain closed its recipients are not attempted
// and nothing is counted, even long past the give-up age; the gate hears
// that mail waits. Once it opens, the next dispatch delivers at once, and
// the domain that stays closed keeps its recipient queued.
func TestRunnerGateHoldsWithoutAttempts(t *testing.T) {
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	s := &scripted{now: clock.Now}
	set := DefaultSettings()
	set.GiveUpAfter = time.Hour
	r := NewRunner(q, s, nil, set, nil)
	r.Now = clock.Now
	g := &testGate{open: map[string]bool{}, waiting: make(chan []string, 1), attempted: make(chan string, 10)}
	r.Gate = g
	attempts := make(chan Envelope, 10)
	r.finished = func(env Envelope) { attempts <- env }
	enqueue(t, q, &Envelope{ID: testID(30), From: "a@x.test", Received: start,
		Recipients: []Recipient{{Addr: "b@out.test", State: Pending}, {Addr: "c@held.test", State: Pending}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	select {
	case ds := <-g.waiting:
		if !slices.Equal(ds, []string{"held.test", "out.test"}) {
			t.Errorf("waiting for %v", ds)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the gate was not told that mail waits")
	}
	// A day passes with the link down: still no attempt.
	clock.Set(start.Add(24 * time.Hour))
	r.Poke()
	select {
	case ds := <-g.waiting:
		if len(ds) != 2 {
			t.Errorf("waiting for %v", ds)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the gate was not told again")
	}
	if s.n() != 0 {
		t.Fatalf("%d deliveries attempted through a closed gate", s.n())
	}
	g.set("out.test", true)
	r.Poke()
	var env Envelope
	select {
	case env = <-attempts:
	case <-time.After(5 * time.Second):
		t.Fatal("no attempt after the gate opened")
	}
	if d := <-g.attempted; d != "out.test" {
		t.Errorf("attempt reported for %q", d)
	}
	if s.n() != 1 || len(s.jobs[0].Rcpts) != 1 || s.jobs[0].Rcpts[0].Addr != "b@out.test" {
		t.Fatalf("jobs: %+v", s.jobs)
	}
	if env.Recipients[0].State != Delivered || env.Recipients[1].State != Pending || env.Recipients[1].Attempts != 0 {
		t.Errorf("after the attempt: %+v", env.Recipients)
	}
	saved, err := q.Load(testID(30))
	if err != nil || saved.Recipients[1].State != Pending || saved.Recipients[1].Attempts != 0 {
		t.Errorf("the held recipient on disk: %+v %v", saved, err)
	}
}

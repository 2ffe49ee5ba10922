package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// harness runs a runner over a fresh queue and records its notices.
type harness struct {
	q        *Queue
	r        *Runner
	mu       sync.Mutex
	notices  []Notice
	attempts chan Envelope
	cancel   context.CancelFunc
	done     chan struct{}
}

func newHarness(t *testing.T, s Sender, set Settings) *harness {
	t.Helper()
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{q: q, attempts: make(chan Envelope, 100), done: make(chan struct{})}
	h.r = NewRunner(q, s, func(ctx context.Context, n Notice) error {
		h.mu.Lock()
		h.notices = append(h.notices, n)
		h.mu.Unlock()
		return nil
	}, set, nil)
	h.r.finished = func(env Envelope) { h.attempts <- env }
	return h
}

func (h *harness) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.r.Run(ctx); close(h.done) }()
	t.Cleanup(func() { cancel(); <-h.done })
}

// attempt waits for the next recorded attempt.
func (h *harness) attempt(t *testing.T) Envelope {
	t.Helper()
	select {
	case env := <-h.attempts:
		return env
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt")
	}
	return Envelope{}
}

func (h *harness) kinds() []NoticeKind {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []NoticeKind
	for _, n := range h.notices {
		out = append(out, n.Kind)
	}
	return out
}

// A message that has passed more than MaxHops servers (besides us) is not sent: it bounces with
// 5.4.6 (mail loop) at once.
func TestRunnerRefusesLoopingMail(t *testing.T) {
	s := &scripted{}
	h := newHarness(t, s, DefaultSettings())
	env := &Envelope{ID: testID(1), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now()}
	msg := strings.Repeat("Received: from a by b; Mon, 2 Mar 2026 09:00:00 +0000\r\n", MaxHops+2) + "Subject: loop\r\n\r\nbody\r\n"
	os.WriteFile(h.q.MsgPath(env.ID), []byte(msg), 0o600)
	env.Size = int64(len(msg))
	h.q.Save(env)
	h.run(t)
	got := h.attempt(t)
	if s.n() != 0 {
		t.Errorf("a looping message was sent")
	}
	if rc := got.Recipients[0]; rc.State != Failed || rc.Status != "5.4.6" || !strings.Contains(rc.LastError, "loop") {
		t.Errorf("recipient %+v, want failed with 5.4.6", rc)
	}
	if k := h.kinds(); len(k) != 1 || k[0] != Failure {
		t.Errorf("notices %v, want one failure", k)
	}

	// One hop fewer goes out.
	s2 := &scripted{}
	h2 := newHarness(t, s2, DefaultSettings())
	msg = strings.Repeat("Received: x\r\n", MaxHops+1) + "\r\nbody\r\n"
	os.WriteFile(h2.q.MsgPath(env.ID), []byte(msg), 0o600)
	env2 := &Envelope{ID: testID(1), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}, Received: time.Now(), Size: int64(len(msg))}
	h2.q.Save(env2)
	h2.run(t)
	h2.attempt(t)
	if s2.n() != 1 {
		t.Errorf("a message with %d hops was not sent", MaxHops+1)
	}
}

// NOTIFY (RFC 3461 4.1): NEVER gets no bounce; FAILURE without DELAY no
// delay warning; DELAY alone no bounce; no NOTIFY the defaults.
func TestRunnerHonoursNotify(t *testing.T) {
	for _, c := range []struct {
		notify string
		want   []NoticeKind // after a delayed attempt, then a permanent failure
	}{
		{"", []NoticeKind{Delay, Failure}},
		{"NEVER", nil},
		{"FAILURE", []NoticeKind{Failure}},
		{"DELAY", []NoticeKind{Delay}},
		{"SUCCESS,DELAY,FAILURE", []NoticeKind{Delay, Failure}},
	} {
		t.Run("notify="+c.notify, func(t *testing.T) {
			start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
			clock := &fakeClock{t: start}
			s := &scripted{script: []error{tempErr{}, permErr{}}}
			set := DefaultSettings()
			set.WarnAfter = time.Minute
			set.Schedule = []time.Duration{time.Hour}
			h := newHarness(t, s, set)
			h.r.Now = clock.Now
			enqueue(t, h.q, &Envelope{ID: testID(1), From: "a@x.test", Received: start,
				Recipients: []Recipient{{Addr: "b@y.test", State: Pending, Notify: c.notify}}})
			clock.Set(start.Add(2 * time.Minute)) // past WarnAfter at the first attempt
			h.run(t)
			env := h.attempt(t)
			clock.Set(env.NextAttempt)
			h.r.poke()
			h.attempt(t)
			got := h.kinds()
			if len(got) != len(c.want) {
				t.Fatalf("notices %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("notices %v, want %v", got, c.want)
				}
			}
			if ids, _ := h.q.List(); len(ids) != 0 {
				t.Errorf("message left in the queue: %v", ids)
			}
		})
	}
}

// relaying answers every recipient as delivered to a next hop without DSN.
type relaying struct{}

func (relaying) Send(ctx context.Context, j *Job) []Result {
	out := make([]Result, len(j.Rcpts))
	for i := range out {
		out[i].Success = "relayed"
	}
	return out
}

// NOTIFY=SUCCESS to a next hop without DSN: a "relayed" notice for those
// who asked (RFC 3461 5.2.2), none for the others.
func TestRunnerSuccessNotice(t *testing.T) {
	h := newHarness(t, relaying{}, DefaultSettings())
	enqueue(t, h.q, &Envelope{ID: testID(1), From: "a@x.test", Received: time.Now(), Recipients: []Recipient{
		{Addr: "b@y.test", State: Pending, Notify: "SUCCESS", ORcpt: "rfc822;b@y.test"},
		{Addr: "c@y.test", State: Pending},
	}})
	h.run(t)
	h.attempt(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.notices) != 1 || h.notices[0].Kind != Success || len(h.notices[0].Recipients) != 1 {
		t.Fatalf("notices %+v, want one success notice", h.notices)
	}
	if rc := h.notices[0].Recipients[0]; rc.Addr != "b@y.test" || rc.Success != "relayed" || rc.ORcpt != "rfc822;b@y.test" {
		t.Errorf("notice recipient %+v", rc)
	}
}

// Forwarded recipients of a domain go in their own job (another sender).
func TestRunnerSeparatesForwarded(t *testing.T) {
	s := &scripted{}
	h := newHarness(t, s, DefaultSettings())
	enqueue(t, h.q, &Envelope{ID: testID(1), From: "a@x.test", Received: time.Now(), Ret: "HDRS", EnvID: "e1", Recipients: []Recipient{
		{Addr: "b@y.test", State: Pending}, {Addr: "c@y.test", State: Pending, Forwarded: true}, {Addr: "d@y.test", State: Pending},
	}})
	h.run(t)
	h.attempt(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.jobs) != 2 {
		t.Fatalf("%d jobs, want 2", len(s.jobs))
	}
	for _, j := range s.jobs {
		if j.Ret != "HDRS" || j.EnvID != "e1" || j.Domain != "y.test" {
			t.Errorf("job %+v lacks the message's DSN parameters", j)
		}
		if j.Forwarded != (len(j.Rcpts) == 1 && j.Rcpts[0].Addr == "c@y.test") {
			t.Errorf("job forwarded=%v with %+v", j.Forwarded, j.Rcpts)
		}
	}
}

// The runner's admin calls refuse an ID that is a path: nothing outside
// the queue goes.
func TestRunnerChecksIDs(t *testing.T) {
	h := newHarness(t, &scripted{script: []error{tempErr{}}}, DefaultSettings())
	victim := filepath.Join(filepath.Dir(h.q.Dir), "concierge.json")
	os.WriteFile(victim, []byte("{}"), 0o600)
	id := testID(1)
	enqueue(t, h.q, &Envelope{ID: id, From: "a@x.test", Received: time.Now(), Recipients: []Recipient{{Addr: "b@y.test", State: Pending}}})
	h.run(t)
	h.attempt(t)
	for _, bad := range []string{"../../concierge", "../env/" + id} {
		if err := h.r.Delete(bad); err == nil {
			t.Errorf("Delete(%q) succeeded", bad)
		}
		if err := h.r.Retry(bad); err == nil {
			t.Errorf("Retry(%q) succeeded", bad)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("a call deleted %s: %v", victim, err)
	}
	if _, err := h.q.Load(id); err != nil {
		t.Errorf("the queued message went: %v", err)
	}
	if err := h.r.Delete(id); err != nil {
		t.Fatal(err)
	}
	if ids, _ := h.q.List(); len(ids) != 0 {
		t.Errorf("del of a valid ID left %v", ids)
	}
}

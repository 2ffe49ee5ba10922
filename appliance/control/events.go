package control

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Bounds of events.wait.
const (
	DefaultEventWait = 30 * time.Second
	MaxEventWait     = 5 * time.Minute
)

// events holds the latest event of each kind; waiters wake on every
// publish.
type events struct {
	mu     sync.Mutex
	latest map[string]Event
	change chan struct{} // closed and replaced on each publish
}

func newEvents() *events {
	return &events{latest: map[string]Event{}, change: make(chan struct{})}
}

func (e *events) publish(kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := Event{Kind: kind, Generation: e.latest[kind].Generation + 1, Time: time.Now()}
	e.latest[kind] = ev
	close(e.change)
	e.change = make(chan struct{})
	return ev.Generation
}

// wait returns the latest event of kind once its generation is above
// after, or ctx's error.
func (e *events) wait(ctx context.Context, kind string, after int) (Event, error) {
	for {
		e.mu.Lock()
		ev, ch := e.latest[kind], e.change
		e.mu.Unlock()
		if ev.Generation > after {
			return ev, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ev, ctx.Err()
		}
	}
}

func (s *Service) eventsWait(ctx context.Context, a Args) (any, error) {
	kind := a["kind"]
	if kind != EventSettingsApplied && kind != EventNamesClaimed {
		return nil, invalid("kind", "kind: %q is not %s or %s", kind, EventSettingsApplied, EventNamesClaimed)
	}
	after := 0
	if v := a["after"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, invalid("after", "after: %q is not a generation number", v)
		}
		after = n
	}
	timeout := DefaultEventWait
	if v := a["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxEventWait {
			return nil, invalid("timeout", "timeout: %q is not a duration up to %v", v, MaxEventWait)
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ev, err := s.events.wait(ctx, kind, after)
	if err != nil {
		return nil, Errorf(CodeUnavailable, "no %s event after generation %d within %v (latest: %d)", kind, after, timeout, ev.Generation)
	}
	return ev, nil
}

// MaxLogLines bounds log.recent.
const MaxLogLines = 1000

func (s *Service) logRecent(ctx context.Context, a Args) (any, error) {
	n := 100
	if v := a["n"]; v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > MaxLogLines {
			return nil, invalid("n", "n: %q is not a number from 1 to %d", v, MaxLogLines)
		}
	}
	lines := s.opt.Live.RecentLog(n)
	if lines == nil {
		lines = []LogLine{}
	}
	return lines, nil
}

func (e *events) latestGeneration(kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.latest[kind].Generation
}

package appliance

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"concierge/appliance/control"
)

// logRing keeps the last lines of the server's log, in the text form the
// log file has, for the status page and "concierge log".
type logRing struct {
	mu      sync.Mutex
	lines   []control.LogLine // a ring: next is the oldest once full
	next    int
	full    bool
	pending control.LogLine // the record being formatted by Write
}

func newLogRing(n int) *logRing { return &logRing{lines: make([]control.LogLine, n)} }

// handler returns the slog handler that writes into the ring.
func (r *logRing) handler(level slog.Leveler) slog.Handler {
	return ringHandler{ring: r, text: slog.NewTextHandler(ringWriter{r}, &slog.HandlerOptions{Level: level})}
}

// recent returns the last n lines, oldest first.
func (r *logRing) recent(n int) []control.LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []control.LogLine
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if n < len(all) {
		all = all[len(all)-n:]
	}
	return all
}

// ringHandler formats records with a text handler whose output goes into
// the ring; the ring's lock is held from Handle to the Write it causes.
type ringHandler struct {
	ring *logRing
	text slog.Handler
}

func (h ringHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.text.Enabled(ctx, l) }

func (h ringHandler) Handle(ctx context.Context, rec slog.Record) error {
	h.ring.mu.Lock()
	defer h.ring.mu.Unlock()
	h.ring.pending = control.LogLine{Time: rec.Time, Level: rec.Level.String(), Message: rec.Message}
	return h.text.Handle(ctx, rec)
}

func (h ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ringHandler{ring: h.ring, text: h.text.WithAttrs(as)}
}

func (h ringHandler) WithGroup(name string) slog.Handler {
	return ringHandler{ring: h.ring, text: h.text.WithGroup(name)}
}

// ringWriter stores the line of the record in Handle (its lock held).
type ringWriter struct{ ring *logRing }

func (w ringWriter) Write(p []byte) (int, error) {
	r := w.ring
	l := r.pending
	l.Text = strings.TrimRight(string(p), "\n")
	r.lines[r.next] = l
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	return len(p), nil
}

// teeHandler hands every record to each of its handlers.
type teeHandler []slog.Handler

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (t teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	var first error
	for _, h := range t {
		if h.Enabled(ctx, rec.Level) {
			if err := h.Handle(ctx, rec.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}

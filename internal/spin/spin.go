// Package spin decides, for a reader that has just answered a batch of
// datagrams, whether it polls its socket without sleeping for the next
// requests or waits in the runtime's poller.
//
// Polling catches a request that comes microseconds later for far less
// than waking a parked reader costs, but burns the whole gap when requests
// come one at a time: a lone client's round trip through the LAN is
// 30–50 µs, and a fixed 50 µs poll made a NetBIOS name query from one
// requester cost more CPU than nmbd spends on it (cmd/bench/nbt). So
// a Spinner keeps a moving average of how long the reader waited for the
// next request after answering, and polls, for at most For, only while
// that average is under Gap, about what a wake-up costs.
package spin

import "time"

// For is the longest a reader polls after its answers; Gap the average
// wait under which it polls at all.
const (
	For = 50 * time.Microsecond
	Gap = 10 * time.Microsecond
)

// Spinner is one reader's state. Its methods read the monotonic clock
// only (one vDSO call each).
type Spinner struct {
	base    time.Time     // origin: time.Since(base) reads one clock
	sent    time.Duration // when the last answers went out, since base
	waiting bool          // answers went out and no request came since
	gap     time.Duration // moving average of the wait from answers to the next request
}

// New returns a Spinner that polls until it has seen long waits.
func New() *Spinner { return &Spinner{base: time.Now()} }

// Poll reports whether the next read should poll (MSG_DONTWAIT) rather
// than wait in the poller.
func (s *Spinner) Poll() bool { return s.poll(time.Since(s.base)) }

// Answered records that answers went out now.
func (s *Spinner) Answered() { s.answered(time.Since(s.base)) }

// Arrived records that requests were read now.
func (s *Spinner) Arrived() { s.arrived(time.Since(s.base)) }

func (s *Spinner) poll(now time.Duration) bool {
	return s.waiting && s.gap < Gap && now-s.sent < For
}

func (s *Spinner) answered(now time.Duration) { s.sent, s.waiting = now, true }

// arrived takes a wait longer than For as For.
func (s *Spinner) arrived(now time.Duration) {
	if s.waiting {
		s.gap += (min(now-s.sent, For) - s.gap) / 8
		s.waiting = false
	}
}

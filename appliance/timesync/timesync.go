// Package timesync keeps the box's clock right with SNTP (RFC 4330, over
// the NTP packets of RFC 5905 that github.com/beevik/ntp speaks): the box
// has no battery clock, so it starts at whatever time the kernel guesses,
// and Date: headers, Received: lines and TLS certificate checks need the
// real time.
//
// A Syncer asks its servers in turn until one gives a valid answer, steps
// the clock when it may and the offset is larger than StepThreshold, and
// keeps a Status for the control API. A round with no valid answer is
// tried again after RetryMin, doubling up to RetryMax; after a good round
// it asks again after Poll.
package timesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"

	"concierge/internal/hostaddr"
)

// The defaults, read by appliance/config as well.
var (
	// DefaultServers are the NTP pool's names: an office box reaches them
	// through any ISP. An ISP's own time server is better when it has one.
	DefaultServers = []string{"0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org"}
)

const (
	// DefaultPoll is the time between good rounds.
	DefaultPoll = 15 * time.Minute
	// DefaultRetryMin and DefaultRetryMax bound the wait after a failed
	// round: it starts at RetryMin and doubles up to RetryMax.
	DefaultRetryMin = 2 * time.Second
	DefaultRetryMax = 10 * time.Minute
	// DefaultQueryTimeout bounds one server's answer (name lookup
	// included).
	DefaultQueryTimeout = 5 * time.Second
	// DefaultStepThreshold is the offset above which the clock is set
	// (stepped); smaller offsets are left alone: the box's own clock
	// drifts far less than that between rounds.
	DefaultStepThreshold = 500 * time.Millisecond
	// DefaultMaxAge is how long after the last good round the clock
	// still counts as synchronized.
	DefaultMaxAge = 3 * DefaultPoll
)

// Settings of a Syncer; Configure swaps them live.
type Settings struct {
	// Servers are host names or addresses, each with an optional
	// ":port"; none turns the Syncer off.
	Servers []string
	// SetClock lets the Syncer set the system clock. Only the box's
	// firmware does: a server on a workstation or in a test only
	// measures.
	SetClock bool
	// HostKeeps says that the machine's own time keeping is in charge
	// (a server that is not the box's init, time.set_clock auto): no
	// server is asked, so a workstation or a test sends no query.
	HostKeeps bool
	// Lookup resolves the servers' host names; nil means the system's
	// resolver (/etc/resolv.conf, which the box's image does not have:
	// there the appliance passes the DNS servers of its settings).
	Lookup hostaddr.Lookup
	// Zero values mean the defaults above.
	Poll, RetryMin, RetryMax, QueryTimeout, StepThreshold, MaxAge time.Duration
}

func (s Settings) withDefaults() Settings {
	or := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	or(&s.Poll, DefaultPoll)
	or(&s.RetryMin, DefaultRetryMin)
	or(&s.RetryMax, DefaultRetryMax)
	or(&s.QueryTimeout, DefaultQueryTimeout)
	or(&s.StepThreshold, DefaultStepThreshold)
	or(&s.MaxAge, DefaultMaxAge)
	return s
}

// Sample is one server's valid answer.
type Sample struct {
	// Offset is how far the local clock is behind the server's (add it to
	// the local time to get the server's).
	Offset  time.Duration
	RTT     time.Duration
	Stratum int
}

// Status is the state of time keeping, for the control API.
type Status struct {
	// Enabled is false when no server is set or the host keeps the time.
	Enabled bool `json:"enabled"`
	// HostKeeps: the machine's own time keeping is in charge (not the
	// box's init, time.set_clock auto); nothing is asked.
	HostKeeps bool `json:"host_keeps,omitempty"`
	// SetClock is whether the box sets its clock (else it only measures).
	SetClock bool     `json:"set_clock"`
	Servers  []string `json:"servers"`
	// Synchronized is true while the last good round is recent (within
	// MaxAge).
	Synchronized bool `json:"synchronized"`
	// Server, Offset, RTT and Stratum describe the last good answer (the
	// offset as measured, before any step).
	Server   string `json:"server,omitempty"`
	Offset   string `json:"offset,omitempty"` // like "-1.2ms"
	OffsetNS int64  `json:"offset_ns"`
	RTT      string `json:"rtt,omitempty"`
	Stratum  int    `json:"stratum,omitempty"`
	// LastSync is the time of the last good round, LastStep that of the
	// last time the clock was set, and by how much.
	LastSync time.Time `json:"last_sync,omitzero"`
	LastStep time.Time `json:"last_step,omitzero"`
	Stepped  string    `json:"stepped,omitempty"`
	// LastError is the last failed round's problem (one per server), kept
	// until a round succeeds; LastErrorAt is when.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// NextQuery is when the next round starts.
	NextQuery time.Time `json:"next_query,omitzero"`
}

// Syncer runs the rounds.
type Syncer struct {
	// Query asks one server (nil: SNTP with beevik/ntp).
	Query func(ctx context.Context, server string, timeout time.Duration) (Sample, error)
	// Step sets the clock forward (or back) by offset (nil: Step).
	Step func(offset time.Duration) error
	Log  *slog.Logger

	mu      sync.Mutex
	set     Settings
	st      Status
	wake    chan struct{}
	changed chan struct{} // closed and replaced when the status changes
}

// New returns a Syncer with set; Run starts it.
func New(set Settings, log *slog.Logger) *Syncer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Syncer{Log: log, wake: make(chan struct{}, 1), changed: make(chan struct{})}
	s.set = set.withDefaults()
	return s
}

// Configure changes the settings; a change of servers forgets the last
// answers and starts a round now.
func (s *Syncer) Configure(set Settings) {
	set = set.withDefaults()
	s.mu.Lock()
	newServers := !equal(set.Servers, s.set.Servers)
	again := newServers || set.SetClock != s.set.SetClock
	s.set = set
	s.mu.Unlock()
	if newServers {
		// What the old servers said does not describe the new ones.
		s.update(func(st *Status) { *st = Status{LastStep: st.LastStep, Stepped: st.Stepped} })
	}
	if again {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// Status returns the state.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Enabled = len(s.set.Servers) > 0 && !s.set.HostKeeps
	st.HostKeeps = s.set.HostKeeps
	st.SetClock = s.set.SetClock
	st.Servers = append([]string{}, s.set.Servers...)
	st.Synchronized = st.Enabled && !st.LastSync.IsZero() && time.Since(st.LastSync) < s.set.MaxAge
	return st
}

// Changed returns a channel closed at the next change of the status.
func (s *Syncer) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Run does rounds until ctx is done.
func (s *Syncer) Run(ctx context.Context) {
	failed := 0
	for {
		s.mu.Lock()
		set := s.set
		s.mu.Unlock()
		var wait time.Duration
		switch {
		case len(set.Servers) == 0 || set.HostKeeps:
			wait = -1 // until the settings change
		case s.round(ctx, set):
			failed, wait = 0, set.Poll
		default:
			wait = min(set.RetryMin<<min(failed, 30), set.RetryMax)
			failed++
		}
		if ctx.Err() != nil {
			return
		}
		var next time.Time
		if wait >= 0 {
			next = time.Now().Add(wait)
		}
		s.update(func(st *Status) { st.NextQuery = next })
		switch s.sleep(ctx, wait) {
		case stopped:
			return
		case woken:
			failed = 0
		}
	}
}

type wakeup int

const (
	timedOut wakeup = iota
	woken
	stopped
)

// sleep waits d (forever when d < 0), until Configure wakes it, or until
// ctx is done.
func (s *Syncer) sleep(ctx context.Context, d time.Duration) wakeup {
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return stopped
	case <-timer:
		return timedOut
	case <-s.wake:
		return woken
	}
}

// round asks the servers in turn; it reports whether one answered.
func (s *Syncer) round(ctx context.Context, set Settings) bool {
	query := s.Query
	if query == nil {
		query = Query
	}
	var problems []string
	for _, srv := range set.Servers {
		// QueryTimeout bounds the name lookup and the answer together.
		qctx, cancel := context.WithTimeout(ctx, set.QueryTimeout)
		addr, err := hostaddr.Resolve(qctx, set.Lookup, srv, "123")
		var sm Sample
		if err == nil {
			sm, err = query(qctx, addr, set.QueryTimeout)
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			problems = append(problems, fmt.Sprintf("%s: %v", srv, err))
			continue
		}
		s.good(srv, sm, set)
		return true
	}
	msg := strings.Join(problems, "; ")
	s.Log.Warn("time: no time server answered", "err", msg)
	s.update(func(st *Status) { st.LastError, st.LastErrorAt = msg, time.Now() })
	return false
}

// good records a valid answer and steps the clock when it may and must.
func (s *Syncer) good(srv string, sm Sample, set Settings) {
	step := set.SetClock && (sm.Offset > set.StepThreshold || sm.Offset < -set.StepThreshold)
	var stepErr error
	if step {
		do := s.Step
		if do == nil {
			do = Step
		}
		stepErr = do(sm.Offset)
	}
	s.Log.Info("time: synchronized", "server", srv, "offset", sm.Offset, "stratum", sm.Stratum, "rtt", sm.RTT, "stepped", step && stepErr == nil)
	s.update(func(st *Status) {
		now := time.Now()
		st.Server, st.Offset, st.OffsetNS, st.RTT, st.Stratum = srv, sm.Offset.String(), int64(sm.Offset), sm.RTT.String(), sm.Stratum
		st.LastSync, st.LastError, st.LastErrorAt = now, "", time.Time{}
		switch {
		case stepErr != nil:
			st.LastError, st.LastErrorAt = fmt.Sprintf("setting the clock by %v: %v", sm.Offset, stepErr), now
			st.LastSync = time.Time{}
		case step:
			st.LastStep, st.Stepped = now, sm.Offset.String()
		}
	})
	if stepErr != nil {
		s.Log.Error("time: setting the clock", "offset", sm.Offset, "err", stepErr)
	}
}

func (s *Syncer) update(f func(*Status)) {
	s.mu.Lock()
	f(&s.st)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// ErrInvalid wraps an answer that came but cannot be used (kiss of
// death, an unsynchronized server, a bad stratum).
var ErrInvalid = errors.New("timesync: unusable answer")

// ErrPanic wraps an answer that made the NTP library panic: beevik/ntp
// v1.6.0 shifts by a negative amount when the precision or poll octet is
// -128 (FuzzQueryAnswer found it), and a server must not be able to end
// the process with one packet.
var ErrPanic = errors.New("timesync: malformed answer")

// Query asks server with SNTP (NTPv4) and checks the answer.
func Query(ctx context.Context, server string, timeout time.Duration) (s Sample, err error) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	defer func() {
		if p := recover(); p != nil {
			s, err = Sample{}, fmt.Errorf("%w: %v", ErrPanic, p)
		}
	}()
	r, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: timeout})
	if err != nil {
		return Sample{}, err
	}
	if err := r.Validate(); err != nil {
		return Sample{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return Sample{Offset: r.ClockOffset, RTT: r.RTT, Stratum: int(r.Stratum)}, nil
}

// Step sets the system clock by offset (CLOCK_REALTIME; needs
// CAP_SYS_TIME).
func Step(offset time.Duration) error {
	ts := unix.NsecToTimespec(time.Now().Add(offset).UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Retry timing and limits: the defaults of Settings.
var (
	// DefaultSchedule is the wait after each failed attempt; the last
	// entry repeats until the message gives up (RFC 5321 4.5.4.1 asks for
	// at least 30 minutes between retries once the first ones failed, and
	// for giving up after 4-5 days).
	DefaultSchedule = []time.Duration{
		time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
	}
	// DefaultWarnAfter is when the sender hears that mail is delayed.
	DefaultWarnAfter = 4 * time.Hour
	// DefaultGiveUpAfter is when delivery stops and the mail bounces.
	DefaultGiveUpAfter = 5 * 24 * time.Hour
)

const (
	// DefaultMaxConns bounds outbound connections overall and
	// DefaultMaxConnsPerDomain those to one destination domain.
	DefaultMaxConns          = 40
	DefaultMaxConnsPerDomain = 10
)

// Settings of a Runner; Configure swaps them live.
type Settings struct {
	Schedule          []time.Duration
	WarnAfter         time.Duration // 0: no delay warnings
	GiveUpAfter       time.Duration
	MaxConns          int
	MaxConnsPerDomain int
}

// DefaultSettings returns the defaults above.
func DefaultSettings() Settings {
	return Settings{Schedule: DefaultSchedule, WarnAfter: DefaultWarnAfter, GiveUpAfter: DefaultGiveUpAfter,
		MaxConns: DefaultMaxConns, MaxConnsPerDomain: DefaultMaxConnsPerDomain}
}

// NextDelay is the wait after the given number of failed attempts.
func NextDelay(schedule []time.Duration, attempts int) time.Duration {
	if len(schedule) == 0 {
		schedule = DefaultSchedule
	}
	i := max(attempts-1, 0)
	if i >= len(schedule) {
		i = len(schedule) - 1
	}
	return schedule[i]
}

// Job is one delivery attempt: one message to recipients of one domain.
type Job struct {
	Domain string
	// From is the envelope sender as received ("" for the null sender).
	From string
	// Forwarded is set when the recipients are addresses our aliases
	// forward to (the sender may then be rewritten, SRS).
	Forwarded bool
	// Rcpts are copies of the recipients, with their DSN parameters.
	Rcpts []Recipient
	// Ret and EnvID are the message's DSN parameters (RFC 3461 4.3, 4.4).
	Ret, EnvID string
	// Body is the message, from its first header to its end.
	Body *io.SectionReader
}

// Result is the outcome for one recipient of a Job.
type Result struct {
	// Err is nil when the recipient was delivered. An error for which
	// IsPermanent is true fails the recipient for good; any other error
	// is retried. Errors may also have Status() (RFC 3463), Diagnostic()
	// (the remote reply) and RemoteMTA() methods, which go into the
	// delivery status notification.
	Err error
	// Success, for a delivered recipient, is "delivered" (into a mailbox
	// here, RFC 3461 5.2.3) or "relayed" (to a next hop without the DSN
	// extension, RFC 3461 5.2.2): a success notice, if asked for, is then
	// ours to send. Empty when the next hop took the DSN request over.
	Success string
}

// Sender delivers one job and returns one result per recipient, in order.
type Sender interface {
	Send(ctx context.Context, j *Job) []Result
}

// NoticeKind says what a notice reports.
type NoticeKind int

// Notice kinds.
const (
	Failure NoticeKind = iota // the recipients failed for good
	Delay                     // the recipients are still being retried
	Success                   // the recipients were delivered and asked to hear of it
)

// Notice asks for a delivery status notification to the sender (or, for
// a failed bounce, to the postmaster).
type Notice struct {
	Kind       NoticeKind
	Env        Envelope
	Recipients []Recipient // the failed or delayed ones
	MsgPath    string      // the message; it starts at Env.BodyOffset
	RetryUntil time.Time   // for Delay: when delivery gives up
}

// Notifier sends a notice durably (into a Maildir or the queue); an error
// keeps the message in the queue to try again.
type Notifier func(ctx context.Context, n Notice) error

// Gate decides whether deliveries to a domain may start now: a dial-up
// link that is down keeps every outside domain closed, and a domain the
// box is backup MX for stays closed until its primary asks with ETRN.
//
// While a domain is closed its recipients are not attempted, and nothing
// is counted: no attempt, no failure, no next-attempt time. The retry
// clock is paused, not run on link-up time only: the recipients stay due,
// and the first dispatch after the gate opens (Flush or Poke) tries them.
// The give-up age still counts from when the message was received, but a
// recipient is given up only after an attempt made while its domain was
// open, so mail is never bounced for the time a link was down alone.
type Gate interface {
	// Open reports whether deliveries to domain may start.
	Open(domain string) bool
	// Waiting is told of the closed domains that have due mail, after
	// each dispatch that found some (an on-demand link dials). It must
	// not call back into the runner synchronously.
	Waiting(domains []string)
	// Attempted is told of each finished attempt to domain: how many
	// recipients were delivered, and the size of the message.
	Attempted(domain string, delivered int, size int64)
}

// Runner delivers the queue.
type Runner struct {
	Queue  *Queue
	Sender Sender
	Notify Notifier
	Log    *slog.Logger
	// Gate, when set before Run, holds deliveries to closed domains.
	Gate Gate
	// Now is the clock (nil: time.Now); tests set it to check the retry
	// schedule exactly.
	Now func() time.Time

	// finished, when set, is called after each attempt is recorded
	// (tests wait for it).
	finished func(env Envelope)

	mu      sync.Mutex
	set     Settings
	items   map[string]*item
	domains map[string]*domainQueue
	conns   int // workers running, each holding at most one connection
	wake    chan struct{}
	ctx     context.Context
	wg      sync.WaitGroup
}

// item is a queued message in memory.
type item struct {
	env     *Envelope
	busy    bool // jobs in flight
	del     bool // delete when the jobs are done
	gone    bool // the message file vanished (its commit was undone)
	pending int  // jobs not finished
	hops    int  // Received: headers of the message, -1 until counted
	results map[int]Result
}

type job struct {
	it        *item
	domain    string
	forwarded bool
	idx       []int // recipient indexes
}

type domainQueue struct {
	jobs    []*job
	workers int
}

// NewRunner returns a runner with the given settings.
func NewRunner(q *Queue, s Sender, n Notifier, set Settings, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{Queue: q, Sender: s, Notify: n, Log: log, set: set,
		items: map[string]*item{}, domains: map[string]*domainQueue{}, wake: make(chan struct{}, 1)}
}

// Configure changes the settings; limits apply to new connections.
func (r *Runner) Configure(set Settings) {
	r.mu.Lock()
	r.set = set
	r.startWorkers()
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) settings() Settings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then waits for deliveries in flight
// (which end early: their connections are closed) and returns. Messages
// are reloaded from disk at start.
func (r *Runner) Run(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	r.scan()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, waiting := r.dispatch(r.now())
		if len(waiting) > 0 {
			r.Gate.Waiting(waiting)
		}
		timer.Reset(max(next.Sub(r.now()), 10*time.Millisecond))
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return
		case <-r.Queue.Notify:
			r.scan()
		case <-r.wake:
		case <-timer.C:
		}
	}
}

// scan adds envelopes that are not known yet (new mail, or all at start).
func (r *Runner) scan() {
	ids, err := r.Queue.List()
	if err != nil {
		r.Log.Error("queue scan", "err", err)
		return
	}
	r.mu.Lock()
	var unknown []string
	for _, id := range ids {
		if r.items[id] == nil {
			unknown = append(unknown, id)
		}
	}
	r.mu.Unlock()
	for _, id := range unknown {
		env, err := r.Queue.Load(id)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // delivered and removed meanwhile
			}
			r.Log.Error("queue: unreadable envelope left in place", "id", id, "err", err)
			continue
		}
		if _, err := os.Stat(r.Queue.MsgPath(id)); err != nil {
			// The message went first in a removal that a crash cut short.
			r.Log.Warn("queue: envelope without message removed", "id", id)
			r.Queue.Remove(id)
			continue
		}
		r.mu.Lock()
		if r.items[id] == nil {
			r.items[id] = &item{env: env, hops: -1}
		}
		r.mu.Unlock()
	}
}

// Domain is the domain of an address (lower case).
func Domain(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}

// open reports whether the gate lets deliveries to domain start.
func (r *Runner) open(domain string) bool {
	return r.Gate == nil || r.Gate.Open(domain)
}

// Poke makes the runner look at the queue again (a gate opened).
func (r *Runner) Poke() { r.poke() }

// dispatch starts due messages and returns when the next one is due, and
// the closed domains that hold due mail.
func (r *Runner) dispatch(now time.Time) (time.Time, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := now.Add(time.Hour)
	var waiting []string
	for _, it := range r.items {
		if it.busy {
			continue
		}
		if it.env.NextAttempt.After(now) {
			if it.env.NextAttempt.Before(next) {
				next = it.env.NextAttempt
			}
			continue
		}
		// One job per domain, and apart from them the forwarded
		// recipients of that domain (they go out with another sender).
		type key struct {
			domain    string
			forwarded bool
		}
		byDomain := map[key][]int{}
		var order []key
		held := 0
		for i, rc := range it.env.Recipients {
			if rc.State != Pending {
				continue
			}
			k := key{Domain(rc.Addr), rc.Forwarded}
			if !r.open(k.domain) {
				if !slices.Contains(waiting, k.domain) {
					waiting = append(waiting, k.domain)
				}
				held++
				continue
			}
			if byDomain[k] == nil {
				order = append(order, k)
			}
			byDomain[k] = append(byDomain[k], i)
		}
		if len(order) == 0 && held > 0 {
			continue // everything due waits for the gate
		}
		it.busy = true
		it.results = map[int]Result{}
		if len(order) == 0 {
			// Nothing to send, only notices owed (after a crash).
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.finish(it) }()
			continue
		}
		it.pending = len(order)
		for _, k := range order {
			dq := r.domains[k.domain]
			if dq == nil {
				dq = &domainQueue{}
				r.domains[k.domain] = dq
			}
			dq.jobs = append(dq.jobs, &job{it: it, domain: k.domain, forwarded: k.forwarded, idx: byDomain[k]})
		}
	}
	r.startWorkers()
	slices.Sort(waiting)
	return next, waiting
}

// startWorkers starts a worker for each domain with waiting jobs, within
// the connection limits. r.mu is held.
func (r *Runner) startWorkers() {
	if r.ctx == nil || r.ctx.Err() != nil {
		return // not running yet, or shutting down
	}
	for d, dq := range r.domains {
		for len(dq.jobs) > dq.workers && dq.workers < r.set.MaxConnsPerDomain && r.conns < r.set.MaxConns {
			dq.workers++
			r.conns++
			r.wg.Add(1)
			go r.worker(d, dq)
		}
	}
}

// worker delivers the jobs of one domain one after another, so that the
// connection of one is reused by the next.
func (r *Runner) worker(d string, dq *domainQueue) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		ctx := r.ctx
		if len(dq.jobs) == 0 || ctx.Err() != nil || dq.workers > r.set.MaxConnsPerDomain || r.conns > r.set.MaxConns {
			dq.workers--
			r.conns--
			if dq.workers == 0 && len(dq.jobs) == 0 {
				delete(r.domains, d)
			}
			r.startWorkers()
			r.mu.Unlock()
			return
		}
		j := dq.jobs[0]
		dq.jobs[0] = nil
		dq.jobs = dq.jobs[1:]
		r.mu.Unlock()
		res := r.send(ctx, j)
		if r.Gate != nil {
			n := 0
			for _, x := range res {
				if x.Err == nil {
					n++
				}
			}
			r.Gate.Attempted(j.domain, n, j.it.env.Size)
		}
		r.mu.Lock()
		for k, i := range j.idx {
			j.it.results[i] = res[k]
		}
		j.it.pending--
		done := j.it.pending == 0
		r.mu.Unlock()
		if done {
			r.finish(j.it)
		}
	}
}

// errTooManyHops fails the recipients of a looping message.
type hopError struct{ hops int }

func (e *hopError) Error() string {
	return fmt.Sprintf("queue: mail loop: the message passed %d mail servers (the limit is %d)", e.hops, MaxHops)
}
func (e *hopError) Permanent() bool { return true }
func (e *hopError) Status() string  { return "5.4.6" } // RFC 3463: routing loop detected

func (r *Runner) send(ctx context.Context, j *job) []Result {
	env := j.it.env
	res := make([]Result, len(j.idx))
	fail := func(err error) []Result {
		for k := range res {
			res[k].Err = err
		}
		return res
	}
	f, err := os.Open(r.Queue.MsgPath(env.ID))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Seen between the store placing it and undoing a failed
			// commit: the client was told to try again, so it is not ours.
			r.mu.Lock()
			j.it.gone = true
			r.mu.Unlock()
		}
		return fail(fmt.Errorf("queue: message file: %w", err))
	}
	defer f.Close()
	size := env.Size
	if fi, err := f.Stat(); err == nil && fi.Size()-env.BodyOffset != size {
		size = fi.Size() - env.BodyOffset
	}
	body := io.NewSectionReader(f, env.BodyOffset, size)
	r.mu.Lock()
	hops := j.it.hops
	r.mu.Unlock()
	if hops < 0 {
		hops = CountHops(io.NewSectionReader(body, 0, size))
		r.mu.Lock()
		j.it.hops = hops
		r.mu.Unlock()
	}
	if hops > MaxHops+1 { // one of them is our own
		return fail(&hopError{hops})
	}
	sj := &Job{Domain: j.domain, From: env.From, Forwarded: j.forwarded, Ret: env.Ret, EnvID: env.EnvID, Body: body}
	for _, i := range j.idx {
		sj.Rcpts = append(sj.Rcpts, env.Recipients[i])
	}
	out := r.Sender.Send(ctx, sj)
	copy(res, out)
	return res
}

// IsPermanent reports whether a delivery error fails the recipient for
// good: it, or an error it wraps, has a Permanent method that says so.
// It is the one test of permanence for every part of delivery.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

func errText[T any](err error, get func(T) string) string {
	var v T
	if errors.As(err, &v) {
		return get(v)
	}
	return ""
}

// finish records the results of an attempt, sends the notices owed and
// removes the message once nothing is left to do.
func (r *Runner) finish(it *item) {
	r.mu.Lock()
	ctx := r.ctx
	set := r.set
	results := it.results
	it.results = nil
	del := it.del
	gone := it.gone
	r.mu.Unlock()
	env := it.env
	id := env.ID
	if r.finished != nil {
		defer func() { r.finished(*env) }()
	}
	if gone {
		r.Log.Warn("queue: message file gone; envelope removed", "id", id)
	}
	if del || gone {
		r.Queue.Remove(id)
		r.drop(id)
		return
	}
	now := r.now().UTC()
	var succeeded []Recipient
	tried := map[int]bool{} // recipients with an attempt counted now
	for i, res := range results {
		rc := &env.Recipients[i]
		err := res.Err
		if err != nil && !IsPermanent(err) && (ctx.Err() != nil || !r.open(Domain(rc.Addr))) {
			continue // interrupted by shutdown, or the link went down: not an attempt
		}
		tried[i] = true
		rc.Attempts++
		rc.LastTry = now
		if err == nil {
			rc.State, rc.LastError, rc.Status, rc.Diagnostic = Delivered, "", "", ""
			rc.Success = res.Success
			r.Log.Info("delivered", "id", id, "to", rc.Addr)
			if res.Success != "" && rc.Wants(Success) && env.From != "" {
				succeeded = append(succeeded, *rc)
			}
			continue
		}
		rc.LastError = err.Error()
		rc.Status = errText(err, func(e interface{ Status() string }) string { return e.Status() })
		rc.Diagnostic = errText(err, func(e interface{ Diagnostic() string }) string { return e.Diagnostic() })
		rc.RemoteMTA = errText(err, func(e interface{ RemoteMTA() string }) string { return e.RemoteMTA() })
		if IsPermanent(err) {
			rc.State = Failed
			if rc.Status == "" {
				rc.Status = "5.0.0"
			}
			r.Log.Warn("delivery failed", "id", id, "to", rc.Addr, "err", err)
		} else {
			if rc.Status == "" {
				rc.Status = "4.0.0"
			}
			r.Log.Info("delivery deferred", "id", id, "to", rc.Addr, "attempts", rc.Attempts, "err", err)
		}
	}
	age := now.Sub(env.Received)
	pending := 0
	attempts := 0
	for i := range env.Recipients {
		rc := &env.Recipients[i]
		if rc.State != Pending {
			continue
		}
		if age >= set.GiveUpAfter && tried[i] {
			// RFC 3463 X.4.7: delivery time expired.
			rc.State = Failed
			rc.LastError = fmt.Sprintf("gave up after %d attempts in %s: %s", rc.Attempts, age.Round(time.Second), rc.LastError)
			rc.Status = "5.4.7"
			continue
		}
		pending++
		attempts = max(attempts, rc.Attempts)
	}
	if len(succeeded) > 0 {
		// RFC 3461 5.2.2 and 5.2.3: the success notice is ours. It is
		// sent once: a crash before the envelope is saved repeats the
		// delivery, and with it the notice.
		if err := r.notify(ctx, Notice{Kind: Success, Env: *env, Recipients: succeeded, MsgPath: r.Queue.MsgPath(id)}); err != nil {
			r.Log.Error("success notice not sent", "id", id, "err", err)
		}
	}
	var failed, told []Recipient
	for _, rc := range env.Recipients {
		if rc.State == Failed && !rc.Notified {
			told = append(told, rc)
			if rc.Wants(Failure) {
				failed = append(failed, rc)
			}
		}
	}
	if len(told) > len(failed) {
		r.Log.Info("failure not reported: the sender asked not to hear of it (NOTIFY)", "id", id, "recipients", len(told)-len(failed))
	}
	if pending == 0 && len(failed) == 0 {
		if err := r.Queue.Done(id); err != nil {
			r.Log.Error("queue remove", "id", id, "err", err)
		}
		r.drop(id)
		return
	}
	notifyOK := true
	if len(failed) > 0 {
		// The failure is on disk before the sender hears of it, so that a
		// crash in between repeats the notice rather than losing it.
		if err := r.Queue.Save(env); err != nil {
			r.Log.Error("queue save", "id", id, "err", err)
		}
		err := r.notify(ctx, Notice{Kind: Failure, Env: *env, Recipients: failed, MsgPath: r.Queue.MsgPath(id)})
		if err != nil {
			notifyOK = false
			r.Log.Error("bounce not sent; trying again later", "id", id, "err", err)
		}
	}
	if notifyOK {
		for i := range env.Recipients {
			if env.Recipients[i].State == Failed {
				env.Recipients[i].Notified = true
			}
		}
	}
	if pending == 0 && notifyOK {
		r.Queue.Done(id)
		r.drop(id)
		return
	}
	if pending > 0 && set.WarnAfter > 0 && age >= set.WarnAfter && !env.Warned && env.From != "" {
		var delayed []Recipient
		for _, rc := range env.Recipients {
			if rc.State == Pending && rc.Wants(Delay) {
				delayed = append(delayed, rc)
			}
		}
		var err error
		if len(delayed) > 0 {
			err = r.notify(ctx, Notice{Kind: Delay, Env: *env, Recipients: delayed, MsgPath: r.Queue.MsgPath(id),
				RetryUntil: env.Received.Add(set.GiveUpAfter)})
		}
		if err != nil {
			r.Log.Error("delay warning not sent", "id", id, "err", err)
		} else {
			env.Warned = true
		}
	}
	env.NextAttempt = now.Add(NextDelay(set.Schedule, max(attempts, 1)))
	if err := r.Queue.Save(env); err != nil {
		r.Log.Error("queue save", "id", id, "err", err)
	}
	r.mu.Lock()
	it.busy = false
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) notify(ctx context.Context, n Notice) error {
	if r.Notify == nil {
		return fmt.Errorf("queue: no notifier")
	}
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	return r.Notify(ctx, n)
}

func (r *Runner) drop(id string) {
	r.mu.Lock()
	delete(r.items, id)
	r.mu.Unlock()
}

// Flush makes every message due now, or those with a pending recipient
// at domain; it returns how many.
func (r *Runner) Flush(domain string) int {
	domain = strings.ToLower(domain)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.poke()
	n := 0
	for _, it := range r.items {
		if it.busy {
			continue
		}
		if domain == "" || slices.ContainsFunc(it.env.Recipients, func(rc Recipient) bool {
			return rc.State == Pending && Domain(rc.Addr) == domain
		}) {
			it.env.NextAttempt = time.Time{}
			n++
		}
	}
	return n
}

// ErrUnknownID is returned for a valid ID that is not queued.
var ErrUnknownID = errors.New("queue: no such message")

// withItem checks id and runs f on its message (nil when the runner does
// not hold it) with the runner locked, then wakes the runner.
func (r *Runner) withItem(id string, f func(it *item) error) error {
	if err := ValidID(id); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.poke()
	return f(r.items[id])
}

// Retry makes one message due now.
func (r *Runner) Retry(id string) error {
	return r.withItem(id, func(it *item) error {
		if it == nil {
			return fmt.Errorf("%w: %s", ErrUnknownID, id)
		}
		if !it.busy {
			it.env.NextAttempt = time.Time{}
		}
		return nil
	})
}

// Delete removes a message without notice to its sender (once its
// delivery in flight, if any, ends).
func (r *Runner) Delete(id string) error {
	return r.withItem(id, func(it *item) error {
		switch {
		case it == nil:
		case it.busy:
			it.del = true
			return nil
		default:
			delete(r.items, id)
		}
		return r.Queue.Remove(id)
	})
}

// Package link is the dial-out link manager: it brings an Internet link
// that is not always on (an on-demand PPP line, a metered modem, a
// satellite window) up when there is work and down when idle, and keeps
// an account of every time it was up.
//
// Modes: Always (never dials; the link is assumed up), Schedule (up every
// Every, for at most MaxUp), OnDemand (up when outbound mail waits or the
// admin asks, down after IdleTime without traffic). "Up" is confirmed by
// a route to the ISP's mail host and the host answering with a 220
// greeting (RFC 5321 4.2), within ConfirmTimeout.
//
// On each link-up, in order, the manager calls OnUp (the appliance
// flushes the outbound queue), then asks the ISP to release the office's
// held inbound mail: ETRN (RFC 1985) for each domain, or finger
// (RFC 1288) "@domain" to port 79.
package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	"concierge/internal/hostaddr"
)

// Mode is how the link is run.
type Mode string

// Modes.
const (
	Always   Mode = "always"
	Schedule Mode = "schedule"
	OnDemand Mode = "on-demand"
)

// Release methods.
const (
	MethodETRN   = "etrn"
	MethodFinger = "finger"
	MethodNone   = "none"
)

// Defaults of Settings.
const (
	DefaultIdleTime       = 5 * time.Minute
	DefaultCommandTimeout = 30 * time.Second
	DefaultConfirmTimeout = 60 * time.Second
	DefaultRetries        = 3
	DefaultRetryWait      = 30 * time.Second
	DefaultEvery          = time.Hour
	DefaultMaxUp          = 15 * time.Minute
	// DefaultRedialWait is the pause after a failed round of tries before
	// waiting mail makes an on-demand link dial again; it doubles after
	// each failed round up to DefaultMaxRedialWait.
	DefaultRedialWait    = time.Minute
	DefaultMaxRedialWait = 15 * time.Minute
	// DefaultReleaseTimeout bounds one ETRN or finger conversation.
	DefaultReleaseTimeout = 30 * time.Second
	// probeInterval is how often the route and the mail host are tried
	// while confirming a link-up.
	probeInterval = 500 * time.Millisecond
	// probeTimeout bounds one connection to the mail host.
	probeTimeout = 5 * time.Second
	// tickInterval is how often the idle and schedule timers are looked at.
	tickInterval = 250 * time.Millisecond
)

// Settings of a Manager; Configure swaps them live.
type Settings struct {
	Mode Mode
	// UpCommand and DownCommand run with "sh -c" (e.g. "pon isp",
	// "ip link set wan up"); empty means the link comes up by itself and
	// is only watched.
	UpCommand, DownCommand string
	CommandTimeout         time.Duration
	// MailHost is the ISP's mail host (host:port): "up" needs it to
	// answer, and ETRN goes there.
	MailHost       string
	ConfirmTimeout time.Duration
	// Retries is how many times a failed link-up is tried again (0: not
	// at all), RetryWait apart (0: at once); the settings file's defaults
	// are DefaultRetries and DefaultRetryWait.
	Retries   int
	RetryWait time.Duration
	// RedialWait is the pause after a failed round of tries before
	// waiting outbound mail dials again (on-demand mode); it doubles
	// after each failed round, up to MaxRedialWait, and starts over after
	// a link-up or a change of settings. The admin's "Connect now" does
	// not wait.
	RedialWait, MaxRedialWait time.Duration
	// IdleTime without outbound deliveries or inbound SMTP sessions from
	// the ISP takes an on-demand link down.
	IdleTime time.Duration
	// Every and MaxUp are the schedule: up every Every, for at most MaxUp
	// (or until idle, whichever comes first).
	Every, MaxUp time.Duration
	// Method releases held inbound mail: MethodETRN, MethodFinger or
	// MethodNone; Domains are the office's domains it names.
	Method  string
	Domains []string
	// ReleaseTimeout bounds the ETRN or finger conversation: an ISP that
	// does not answer within it is reported and asked again at the next
	// link-up.
	ReleaseTimeout time.Duration
	// FingerHost is host:port for the finger method (default MailHost's
	// host, port 79).
	FingerHost string
	// Hostname is said in EHLO.
	Hostname string
	// Lookup resolves MailHost's and FingerHost's names; nil means the
	// system's resolver. The box has no /etc/resolv.conf: the appliance
	// passes the DNS servers of its settings.
	Lookup hostaddr.Lookup
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// State of the link.
type State string

// States.
const (
	Down     State = "down"
	Dialing  State = "dialing"
	Up       State = "up"
	HangUp   State = "hanging up"
	AlwaysOn State = "always on"
)

// Manager runs the link.
type Manager struct {
	Log *slog.Logger
	// OnUp is called once the link is confirmed up, before held mail is
	// released (the appliance flushes the queue).
	OnUp func()
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	acct *Accounts

	mu         sync.Mutex
	set        Settings
	state      State
	want       string // reason a link-up is wanted ("" none)
	downWanted string // reason a link-down is wanted
	lastActive time.Time
	failed     int       // failed rounds of tries since the last link-up
	redialAt   time.Time // waiting mail dials again from then
	upSince    time.Time
	nextSched  time.Time
	lastError  string
	release    []ReleaseResult
	cur        *Record
	wake       chan struct{}
	changed    chan struct{} // closed and replaced on every state change
}

// New returns a manager keeping its accounts in acct.
func New(set Settings, acct *Accounts, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{Log: log, acct: acct, set: set, wake: make(chan struct{}, 1), changed: make(chan struct{})}
	m.state = Down
	if set.Mode == Always || set.Mode == "" {
		m.state = AlwaysOn
	}
	return m
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// setState changes the state and wakes the waiters. m.mu is held.
func (m *Manager) setState(s State) {
	m.state = s
	close(m.changed)
	m.changed = make(chan struct{})
}

// Configure changes the settings.
func (m *Manager) Configure(set Settings) {
	m.mu.Lock()
	old := m.set.Mode
	m.set = set
	if set.Mode == Always && m.state == Down {
		m.setState(AlwaysOn)
	} else if set.Mode != Always && m.state == AlwaysOn {
		m.setState(Down)
	}
	if old != set.Mode {
		m.nextSched = time.Time{}
	}
	m.failed, m.redialAt = 0, time.Time{}
	m.mu.Unlock()
	m.poke()
}

// IsUp reports whether traffic may go out now.
func (m *Manager) IsUp() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state == Up || m.state == AlwaysOn
}

// Changed returns a channel closed at the next state change, and the
// state now.
func (m *Manager) Changed() (<-chan struct{}, State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed, m.state
}

// Want asks for the link to come up (on-demand and schedule modes; the
// admin's "Connect now" in any mode but always).
func (m *Manager) Want(reason string) {
	m.mu.Lock()
	// A reason of its own replaces waiting mail that waits for the redial.
	if m.state == Down && (m.want == "" || m.want == reasonMail) && m.set.Mode != Always {
		m.want = reason
	}
	m.mu.Unlock()
	m.poke()
}

// MailWaiting is told that outbound mail waits for the link: an
// on-demand link dials.
func (m *Manager) MailWaiting() {
	m.mu.Lock()
	od := m.set.Mode == OnDemand
	m.mu.Unlock()
	if od {
		m.Want(reasonMail)
	}
}

// reasonMail is why an on-demand link dials for outbound mail.
const reasonMail = "outbound mail waiting"

// Hangup asks for the link to go down.
func (m *Manager) Hangup(reason string) {
	m.mu.Lock()
	if m.state == Up {
		m.downWanted = reason
	}
	m.want = ""
	m.mu.Unlock()
	m.poke()
}

// Outbound records an outbound delivery: it counts and keeps the link up.
func (m *Manager) Outbound(messages int, bytes int64) {
	m.mu.Lock()
	m.lastActive = m.now()
	if m.cur != nil {
		m.cur.MessagesOut += messages
		m.cur.BytesOut += bytes
	}
	m.mu.Unlock()
}

// Inbound records an inbound SMTP connection (messages 0) or message
// from the ISP: it counts and keeps the link up.
func (m *Manager) Inbound(messages int, bytes int64) {
	m.mu.Lock()
	m.lastActive = m.now()
	if m.cur != nil {
		m.cur.MessagesIn += messages
		m.cur.BytesIn += bytes
	}
	m.mu.Unlock()
}

// Run manages the link until ctx is done; a link it brought up stays as
// it is (a restart finds it up or down and goes on).
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		m.step(ctx)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			if m.cur != nil {
				m.cur.End, m.cur.DownReason = m.now().UTC(), "box stopped"
				m.save()
				m.cur = nil
			}
			m.mu.Unlock()
			return
		case <-m.wake:
		case <-t.C:
		}
	}
}

// step does what is due now.
func (m *Manager) step(ctx context.Context) {
	m.mu.Lock()
	set := m.set
	now := m.now()
	switch m.state {
	case Down:
		if set.Mode == Schedule {
			every := or(set.Every, DefaultEvery)
			if m.nextSched.IsZero() {
				m.nextSched = now
			}
			if !now.Before(m.nextSched) {
				m.nextSched = now.Add(every)
				if m.want == "" {
					m.want = "schedule"
				}
			}
		}
		if m.want != "" && !(m.want == reasonMail && now.Before(m.redialAt)) {
			reason := m.want
			m.want = ""
			m.setState(Dialing)
			m.mu.Unlock()
			m.dial(ctx, set, reason)
			return
		}
	case Up:
		idle := or(set.IdleTime, DefaultIdleTime)
		reason := m.downWanted
		switch {
		case reason != "":
		case set.Mode == OnDemand && now.Sub(m.lastActive) >= idle:
			reason = fmt.Sprintf("idle for %s", idle)
		case set.Mode == Schedule && now.Sub(m.lastActive) >= idle:
			reason = fmt.Sprintf("idle for %s", idle)
		case set.Mode == Schedule && now.Sub(m.upSince) >= or(set.MaxUp, DefaultMaxUp):
			reason = fmt.Sprintf("schedule window of %s over", or(set.MaxUp, DefaultMaxUp))
		}
		if reason != "" {
			m.downWanted = ""
			m.setState(HangUp)
			m.mu.Unlock()
			m.hangup(ctx, set, reason)
			return
		}
	}
	m.mu.Unlock()
}

// dial brings the link up, with retries, then flushes and releases.
func (m *Manager) dial(ctx context.Context, set Settings, reason string) {
	start := m.now()
	m.Log.Info("link: bringing up", "reason", reason)
	var err error
	for try := 0; try <= set.Retries; try++ {
		if try > 0 {
			m.Log.Info("link: trying again", "attempt", try+1, "after", set.RetryWait)
			select {
			case <-ctx.Done():
			case <-time.After(set.RetryWait):
			}
		}
		if ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		if err = m.runCommand(ctx, set, "up", set.UpCommand); err == nil {
			err = m.confirm(ctx, set)
		}
		if err == nil {
			break
		}
		m.Log.Warn("link: up failed", "err", err)
		if set.DownCommand != "" {
			m.runCommand(ctx, set, "down", set.DownCommand)
		}
	}
	m.mu.Lock()
	if err != nil {
		m.failed++
		wait := redialWait(set, m.failed)
		m.redialAt = m.now().Add(wait)
		m.lastError = "the link did not come up: " + err.Error()
		m.setState(Down)
		m.mu.Unlock()
		m.Log.Error("link: could not bring the link up", "reason", reason, "err", err, "redial_after", wait)
		return
	}
	now := m.now()
	m.lastError = ""
	m.failed, m.redialAt = 0, time.Time{}
	m.upSince, m.lastActive = now, now
	m.cur = &Record{Start: now.UTC(), Reason: reason, DialTime: Duration(now.Sub(start))}
	m.save()
	m.setState(Up)
	m.mu.Unlock()
	m.Log.Info("link: up", "reason", reason, "took", now.Sub(start).Round(time.Millisecond))
	if m.OnUp != nil {
		m.Log.Info("link: flushing the outbound queue")
		m.OnUp()
	}
	m.releaseHeld(ctx, set)
}

// redialWait is the pause after the n-th failed round of tries in a row:
// RedialWait doubled n-1 times, at most MaxRedialWait.
func redialWait(set Settings, n int) time.Duration {
	wait, most := or(set.RedialWait, DefaultRedialWait), or(set.MaxRedialWait, DefaultMaxRedialWait)
	for i := 1; i < n && wait < most; i++ {
		wait *= 2
	}
	return min(wait, most)
}

// hangup takes the link down and closes the record.
func (m *Manager) hangup(ctx context.Context, set Settings, reason string) {
	m.Log.Info("link: taking down", "reason", reason)
	err := m.runCommand(ctx, set, "down", set.DownCommand)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.lastError = "the down command failed: " + err.Error()
	}
	if m.cur != nil {
		m.cur.End, m.cur.DownReason = m.now().UTC(), reason
		m.save()
		r := *m.cur
		m.cur = nil
		m.Log.Info("link: down", "reason", reason, "up_for", r.End.Sub(r.Start).Round(time.Second),
			"messages_out", r.MessagesOut, "bytes_out", r.BytesOut, "messages_in", r.MessagesIn, "bytes_in", r.BytesIn)
	}
	m.setState(Down)
}

// save writes the accounts with the current record. m.mu is held.
func (m *Manager) save() {
	if m.acct == nil || m.cur == nil {
		return
	}
	if err := m.acct.Put(*m.cur); err != nil {
		m.Log.Error("link: accounting not saved", "err", err)
	}
}

// runCommand runs an up or down command with the timeout, logging its
// output.
func (m *Manager) runCommand(ctx context.Context, set Settings, what, command string) error {
	if command == "" {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, or(set.CommandTimeout, DefaultCommandTimeout))
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	m.Log.Info("link: "+what+" command", "command", command, "output", string(bytes.TrimSpace(out.Bytes())), "err", errString(err))
	if cctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s command %q timed out after %s", what, command, or(set.CommandTimeout, DefaultCommandTimeout))
	}
	if err != nil {
		// The command's last words say why (e.g. "the modem does not answer").
		said := string(bytes.TrimSpace(out.Bytes()))
		if i := strings.LastIndexByte(said, '\n'); i >= 0 {
			said = said[i+1:]
		}
		if said != "" {
			return fmt.Errorf("%s command %q: %w: %s", what, command, err, said)
		}
		return fmt.Errorf("%s command %q: %w", what, command, err)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// confirm waits until there is a route to the mail host and it greets.
func (m *Manager) confirm(ctx context.Context, set Settings) error {
	if set.MailHost == "" {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, or(set.ConfirmTimeout, DefaultConfirmTimeout))
	defer cancel()
	var last error
	for {
		var addr string
		if addr, last = hostaddr.Resolve(cctx, set.Lookup, set.MailHost, "25"); last == nil {
			if last = probe(cctx, addr); last == nil {
				return nil
			}
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("the ISP's mail host %s did not answer within %s: %w", set.MailHost, or(set.ConfirmTimeout, DefaultConfirmTimeout), last)
		case <-time.After(probeInterval):
		}
	}
}

var errNoRoute = errors.New("no route")

// probe checks the route (a UDP socket connects only with one) and that
// the mail host answers with 220.
func probe(ctx context.Context, hostport string) error {
	if u, err := net.Dial("udp", hostport); err != nil {
		return fmt.Errorf("%w to %s: %v", errNoRoute, hostport, err)
	} else {
		u.Close()
	}
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(probeTimeout))
	code, _, err := readReply(c)
	if err != nil {
		return err
	}
	if code != 220 {
		return fmt.Errorf("greeting %d", code)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return nil
}

package browse

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync/atomic"
	"time"

	"concierge/nbt/datagram"
	"concierge/nbt/wire"
)

// Defaults of Config.
const (
	// MS-BRWS 3.2.6 (and Samba): the first announcement at start, the
	// next a minute later, the period doubling up to 12 minutes.
	DefaultFirstPeriod = time.Minute
	DefaultMaxPeriod   = 12 * time.Minute
	// MS-BRWS 3.2.5.x: an Announcement Request is answered after a
	// random delay of up to 30 seconds, so that a whole LAN does not
	// answer at once.
	DefaultReplyDelay = 30 * time.Second
	// DefaultServerType is what the box is to a browser: a node with a
	// workstation (it has the messenger name NAME<03> and a datagram
	// service) but no file or print service, so SV_TYPE_SERVER is not
	// set: Explorer would try SMB and fail. Neither is
	// SV_TYPE_POTENTIAL_BROWSER: the box takes no part in elections.
	DefaultServerType = SVTypeWorkstation
	// DefaultOSMajor and DefaultOSMinor are the version a non-Windows
	// host announces (Samba's "announce version" default); Windows
	// shows hosts under 4.0 as old LAN Manager servers.
	DefaultOSMajor = 4
	DefaultOSMinor = 9
)

// Config are the announcer's settings; zero durations mean the defaults.
type Config struct {
	Name, Workgroup, Scope string
	Comment                string
	ServerType             uint32 // 0: DefaultServerType
	OSMajor, OSMinor       uint8  // 0.0: the defaults

	FirstPeriod, MaxPeriod time.Duration
	ReplyDelay             time.Duration

	Log *slog.Logger
}

// Announcer sends the box's Host Announcements through a datagram server.
type Announcer struct {
	cfg             Config
	dgm             *datagram.Server
	src, dst        wire.Name   // NAME<00> → WORKGROUP<1D>
	listen          []wire.Name // where Announcement Requests arrive
	sent, requests  atomic.Uint64
	failed, panics  atomic.Uint64
	update          uint8
	firstAnnounced  chan struct{}
	firstAnnouncedF bool
}

// New returns an announcer for cfg that sends through dgm.
func New(cfg Config, dgm *datagram.Server) (*Announcer, error) {
	if cfg.FirstPeriod <= 0 {
		cfg.FirstPeriod = DefaultFirstPeriod
	}
	if cfg.MaxPeriod < cfg.FirstPeriod {
		cfg.MaxPeriod = max(DefaultMaxPeriod, cfg.FirstPeriod)
	}
	if cfg.ReplyDelay <= 0 {
		cfg.ReplyDelay = DefaultReplyDelay
	}
	if cfg.ServerType == 0 {
		cfg.ServerType = DefaultServerType
	}
	if cfg.OSMajor == 0 && cfg.OSMinor == 0 {
		cfg.OSMajor, cfg.OSMinor = DefaultOSMajor, DefaultOSMinor
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Comment) > MaxComment {
		return nil, fmt.Errorf("browse: comment longer than %d characters", MaxComment)
	}
	a := &Announcer{cfg: cfg, dgm: dgm, firstAnnounced: make(chan struct{})}
	var err error
	if a.src, err = wire.MakeName(cfg.Name, 0x00, cfg.Scope); err != nil {
		return nil, fmt.Errorf("browse: %w", err)
	}
	if a.dst, err = wire.MakeName(cfg.Workgroup, 0x1d, cfg.Scope); err != nil {
		return nil, fmt.Errorf("browse: %w", err)
	}
	// Browsers send Announcement Requests to the workgroup's group
	// names (MS-BRWS 3.3.5.x: WORKGROUP<00>; Windows also uses <1E>).
	for _, sfx := range []byte{0x00, 0x1e} {
		n, _ := wire.MakeName(cfg.Workgroup, sfx, cfg.Scope)
		a.listen = append(a.listen, n)
	}
	return a, nil
}

// Announced is closed after the first Host Announcement left.
func (a *Announcer) Announced() <-chan struct{} { return a.firstAnnounced }

// Counters are the announcer's counters for the status page.
func (a *Announcer) Counters() map[string]uint64 {
	return map[string]uint64{"announcements": a.sent.Load(), "announce_requests": a.requests.Load(),
		"announce_failed": a.failed.Load(), "announce_panics": a.panics.Load()}
}

// Run announces until ctx is done: at once, then after FirstPeriod, the
// period doubling up to MaxPeriod; an Announcement Request brings an
// extra announcement after a random delay of up to ReplyDelay.
func (a *Announcer) Run(ctx context.Context) error {
	select {
	case <-a.dgm.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	reqs := make(chan struct{}, 1)
	for _, n := range a.listen {
		l, err := a.dgm.Listen(n)
		if err != nil {
			return fmt.Errorf("browse: %w", err)
		}
		defer l.Close()
		go a.requestsOn(ctx, l, reqs)
	}
	period := a.cfg.FirstPeriod
	a.announce(period)
	next := time.NewTimer(period)
	defer next.Stop()
	var reply *time.Timer
	var replyC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if reply != nil {
				reply.Stop()
			}
			return nil
		case <-next.C:
			period = min(2*period, a.cfg.MaxPeriod)
			a.announce(period)
			next.Reset(period)
		case <-reqs:
			if replyC == nil {
				reply = time.NewTimer(rand.N(a.cfg.ReplyDelay))
				replyC = reply.C
			}
		case <-replyC:
			replyC = nil
			a.announce(period)
		}
	}
}

// requestsOn passes Announcement Requests received on l to reqs.
func (a *Announcer) requestsOn(ctx context.Context, l *datagram.Listener, reqs chan<- struct{}) {
	for {
		m, err := l.Recv(ctx)
		if err != nil {
			return
		}
		if a.isRequest(m) {
			a.requests.Add(1)
			select {
			case reqs <- struct{}{}:
			default:
			}
		}
	}
}

func (a *Announcer) isRequest(m datagram.Message) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			a.panics.Add(1)
			a.cfg.Log.Error("browse: panic reading a datagram", "panic", r, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	slot, f, err := ParseMailslot(m.Data)
	if err != nil || slot != Mailslot {
		return false
	}
	_, err = ParseAnnouncementRequest(f)
	return err == nil
}

// announce sends one Host Announcement saying the next comes in period.
func (a *Announcer) announce(period time.Duration) {
	h := HostAnnouncement{UpdateCount: a.update, Periodicity: period, ServerName: a.src.Base(),
		OSMajor: a.cfg.OSMajor, OSMinor: a.cfg.OSMinor, ServerType: a.cfg.ServerType, Comment: a.cfg.Comment}
	a.update++
	f, err := h.Append(nil)
	if err == nil {
		err = a.dgm.SendGroup(a.src, a.dst, MailslotWrite(f))
	}
	if err != nil {
		a.failed.Add(1)
		a.cfg.Log.Warn("browse: host announcement", "err", err)
		return
	}
	a.sent.Add(1)
	a.cfg.Log.Debug("browse: host announcement sent", "to", a.dst.String(), "next", period)
	if !a.firstAnnouncedF {
		a.firstAnnouncedF = true
		close(a.firstAnnounced)
	}
}

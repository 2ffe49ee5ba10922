package appliance

import (
	"context"
	"fmt"
	"os"

	"concierge/appliance/config"
	"concierge/appliance/timesync"
	"concierge/internal/firmware"
)

// timeService keeps the clock right (appliance/timesync): it always
// measures against time.ntp_servers, and sets the clock only where
// time.set_clock allows, which "auto" does on the box alone.
type timeService struct {
	env    *Env
	syncer *timesync.Syncer
	cancel context.CancelFunc
	done   chan struct{}
}

func newTimeService(env *Env) Service {
	return &timeService{env: env}
}

func (s *timeService) Name() string { return "time" }

// onBox reports whether this server is the firmware of a box: the child
// of PID 1 (appliance/boot), booted from a slot.
func onBox() bool { return os.Getenv(firmware.SlotEnv) != "" && os.Getppid() == 1 }

// timeSettings: on sets the clock, off only measures, auto sets it on
// the box and leaves time to the host elsewhere (a workstation running
// "make run", a test), where no server is asked at all.
func timeSettings(cfg *config.Config) timesync.Settings {
	// Server names are looked up as the mail's are: through the DNS
	// servers of the settings (the box has no /etc/resolv.conf).
	set := timesync.Settings{Servers: cfg.Time.NTPServers, Lookup: resolver(cfg).LookupHost}
	switch cfg.Time.SetClock {
	case config.SetClockOn:
		set.SetClock = true
	case config.SetClockOff:
	default:
		set.SetClock = onBox()
		set.HostKeeps = !set.SetClock
	}
	return set
}

func (s *timeService) Start(ctx context.Context, cfg *config.Config) error {
	s.syncer = timesync.New(timeSettings(cfg), s.env.Log.With("service", "time"))
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.syncer.Run(rctx)
	}()
	return nil
}

func (s *timeService) Reconfigure(cfg *config.Config) error {
	s.syncer.Configure(timeSettings(cfg))
	return nil
}

// Stop ends the rounds; a query in flight ends within its timeout.
func (s *timeService) Stop(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("time: a query still runs at shutdown")
	}
}

func (s *timeService) Listening() []string {
	st := s.syncer.Status()
	var line string
	switch {
	case st.HostKeeps:
		line = "kept by this machine (not the box's firmware)"
	case !st.Enabled:
		line = "off (no time server set)"
	case st.Synchronized:
		line = fmt.Sprintf("synchronized with %s (offset %s)", st.Server, st.Offset)
	default:
		line = "not synchronized"
	}
	return []string{fmt.Sprintf("%-12s %s", "time", line)}
}

// TimeStatus implements control.Live.
func (s *supervisor) TimeStatus() timesync.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if t, ok := svc.(*timeService); ok {
			return t.syncer.Status()
		}
	}
	return timesync.Status{}
}

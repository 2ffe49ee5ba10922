package appliance

import (
	"log/slog"
	"time"

	"concierge/appliance/netif"
)

// The services that follow the LAN interfaces (nbt, dhcp) look at them
// whenever the kernel reports a change of a link or an address
// (netif.Watch), once every ifRecheck besides, and every ifPoll when
// there are no reports to be had.
const (
	ifRecheck = time.Minute
	ifPoll    = 5 * time.Second
)

// watchInterfaces calls look after every reported change of the
// interfaces and on its timer, until stopped is closed.
func watchInterfaces(stopped <-chan struct{}, log *slog.Logger, look func()) {
	changed, err := netif.Watch(stopped)
	every := ifRecheck
	if err != nil {
		log.Warn("no reports of interface changes; looking every 5 s", "err", err)
		every = ifPoll
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stopped:
			return
		case <-t.C:
		case _, ok := <-changed:
			if !ok {
				select {
				case <-stopped:
					return
				default:
				}
				log.Warn("reports of interface changes ended; looking every 5 s")
				changed = nil
				t.Reset(ifPoll)
			}
		}
		look()
	}
}

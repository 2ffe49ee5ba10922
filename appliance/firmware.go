package appliance

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/internal/firmware"
)

// firmwareStatus describes the running firmware and the slots of the boot
// partition (PID 1 passes the slot in firmware.SlotEnv).
func firmwareStatus() control.FirmwareStatus {
	st := control.FirmwareStatus{Version: firmware.Version, Slot: os.Getenv(firmware.SlotEnv)}
	es, err := firmware.Entries(firmware.BootMount)
	if err != nil {
		return st
	}
	for i, e := range es {
		st.Slots = append(st.Slots, control.FirmwareSlot{
			Slot: e.Slot, Version: firmware.SlotVersion(firmware.BootMount, e.Slot),
			Trial: e.Trial, BootsNext: i == 0, Good: e.Good(),
		})
	}
	return st
}

// markSlotGood runs once every service started: on the box, a firmware
// on trial (the first boot after an update) becomes the one that keeps
// booting once its services answer (health.go). If they do not, the box
// reboots, and the next boot returns to the slot it was updated from:
// the office is not left on a firmware that half works.
func (s *supervisor) markSlotGood(ctx context.Context, cfg *config.Config) {
	slot := os.Getenv(firmware.SlotEnv)
	if slot == "" {
		return // not on the box
	}
	go markGoodWhenHealthy(ctx, s.log, firmware.BootMount, slot, healthProbes(cfg), HealthDeadline, s.Reboot)
}

// Firmware implements control.Live.
func (s *supervisor) Firmware() control.FirmwareStatus { return firmwareStatus() }

// RebootDelay lets the answer of the op that asked for a reboot go out
// before PID 1 stops the services.
const RebootDelay = time.Second

// Reboot implements control.Live: on the box (the child of PID 1, booted
// from a slot) it asks PID 1 to reboot with the signal appliance/boot
// takes for a reboot (SIGTERM); PID 1 stops this process, syncs and
// unmounts.
func (s *supervisor) Reboot() error { return s.signalInit("reboot", unix.SIGTERM) }

// PowerOff implements control.Live as Reboot does, with the signal
// appliance/boot takes for a power-off (SIGUSR2).
func (s *supervisor) PowerOff() error { return s.signalInit("poweroff", unix.SIGUSR2) }

// signalInit sends PID 1 sig after RebootDelay, when this server is the
// box's firmware (the child of PID 1, booted from a slot).
func (s *supervisor) signalInit(what string, sig unix.Signal) error {
	if os.Getenv(firmware.SlotEnv) == "" || os.Getppid() != 1 {
		return control.ErrNotOnBox
	}
	s.log.Info("firmware: "+what+" asked", "in", RebootDelay)
	time.AfterFunc(RebootDelay, func() {
		if err := unix.Kill(1, sig); err != nil {
			s.log.Error("firmware: "+what, "err", err)
		}
	})
	return nil
}

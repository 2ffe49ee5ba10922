package appliance

import (
	"errors"
	"log/slog"
	"os"

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

// markSlotGood is called once every service started: a firmware on trial
// (the first boot after an update) becomes the one that keeps booting.
// Without the mark, the next boot returns to the slot it was updated from.
func markSlotGood(log *slog.Logger) {
	slot := os.Getenv(firmware.SlotEnv)
	if slot == "" {
		return // not on the box
	}
	switch err := firmware.MarkGood(firmware.BootMount, slot); {
	case err == nil:
		log.Info("firmware: the new firmware is up; slot marked good", "slot", slot, "version", firmware.Version)
	case errors.Is(err, firmware.ErrNotTrial):
	default:
		log.Error("firmware: marking the slot good", "slot", slot, "err", err)
	}
}

// Firmware implements control.Live.
func (s *supervisor) Firmware() control.FirmwareStatus { return firmwareStatus() }

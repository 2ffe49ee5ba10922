package control

import "context"

// OpFirmwareStatus: the running firmware's version and slot, and the
// slots of the boot partition.
const OpFirmwareStatus = "firmware.status" // → FirmwareStatus

// FirmwareStatus is the running firmware and the boot partition's slots.
type FirmwareStatus struct {
	Version string `json:"version"`
	// Slot is the slot the box booted from; empty when it does not run
	// from a firmware image.
	Slot  string         `json:"slot"`
	Slots []FirmwareSlot `json:"slots,omitempty"`
}

// FirmwareSlot is one slot's entry on the boot partition.
type FirmwareSlot struct {
	Slot    string `json:"slot"`
	Version string `json:"version"`
	// Trial is set for a new firmware that has not yet reported healthy.
	Trial bool `json:"trial"`
	// Good is false for a trial that used up its boot.
	Good bool `json:"good"`
	// BootsNext marks the slot the next boot starts.
	BootsNext bool `json:"boots_next"`
}

func init() {
	register(map[string]opDef{
		OpFirmwareStatus: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.opt.Live.Firmware(), nil
		}},
	})
}

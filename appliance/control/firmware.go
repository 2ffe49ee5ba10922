package control

import (
	"context"
	"errors"
	"os"

	"concierge/internal/firmware"
)

// The firmware ops.
const (
	// OpFirmwareStatus: the running firmware's version and slot, and the
	// slots of the boot partition.
	OpFirmwareStatus = "firmware.status" // → FirmwareStatus
	// OpFirmwareApply verifies the bundle in the file at path (on the
	// box), installs it into the inactive slot for one trial boot and
	// reboots into it (server only, on the box).
	OpFirmwareApply = "firmware.apply" // {path} → FirmwareApplied
	// OpReboot stops the services and reboots the box (server only, on
	// the box).
	OpReboot = "reboot"
	// OpPowerOff stops the services, writes everything to disk and
	// switches the box off (server only, on the box).
	OpPowerOff = "poweroff"
)

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

// State is the slot's state in words.
func (s FirmwareSlot) State() string {
	switch {
	case !s.Good:
		return "failed its trial"
	case s.Trial:
		return "on trial"
	}
	return "good"
}

// FirmwareApplied is the result of firmware.apply: the box reboots into
// Slot right after the answer.
type FirmwareApplied struct {
	Version string `json:"version"`
	Slot    string `json:"slot"`
}

// ErrNotOnBox refuses an install or reboot when the server does not run
// as the firmware of a box (PID 1 mode, booted from a slot).
var ErrNotOnBox = errors.New("this server does not run from a firmware image (it is not the box's init): there is no boot partition to install into and nothing to reboot or switch off; on a development machine use \"concierge firmware apply -boot DIR FILE\"")

func init() {
	register(map[string]opDef{
		OpFirmwareStatus: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.opt.Live.Firmware(), nil
		}},
		OpFirmwareApply: {args: []string{"path"}, run: (*Service).firmwareApply},
		OpReboot:        {live: true, run: stopBox(Live.Reboot)},
		OpPowerOff:      {live: true, run: stopBox(Live.PowerOff)},
	})
}

// stopBox is the op that reboots or switches off the box with how.
func stopBox(how func(Live) error) func(*Service, context.Context, Args) (any, error) {
	return func(s *Service, ctx context.Context, a Args) (any, error) {
		if err := how(s.opt.Live); err != nil {
			return nil, Errorf(CodeUnavailable, "%v", err)
		}
		return nil, nil
	}
}

// firmwareApply verifies the bundle first (so that a damaged or foreign
// bundle is refused anywhere), then installs it into the slot the box
// does not run from and reboots.
func (s *Service) firmwareApply(ctx context.Context, a Args) (any, error) {
	if a["path"] == "" {
		return nil, invalid("bundle", "no firmware bundle given")
	}
	f, err := os.Open(a["path"])
	if err != nil {
		return nil, invalid("bundle", "%v", err)
	}
	b, err := firmware.Read(f, firmware.PublicKey)
	f.Close()
	if err != nil {
		return nil, invalid("bundle", "refused: %v", err)
	}
	if s.opt.Live == nil {
		return nil, ErrNotRunning
	}
	running := s.opt.Live.Firmware().Slot
	if running == "" {
		return nil, Errorf(CodeUnavailable, "%v", ErrNotOnBox)
	}
	slot, err := firmware.Install(firmware.BootMount, b, running)
	if err != nil {
		return nil, Errorf(CodeInternal, "installing into slot %s: %v", firmware.Other(running), err)
	}
	s.opt.Log.Info("control: firmware installed; rebooting into it on trial", "version", b.Manifest.Version, "slot", slot)
	if err := s.opt.Live.Reboot(); err != nil {
		return nil, Errorf(CodeUnavailable, "installed version %s into slot %s, but the reboot failed: %v", b.Manifest.Version, slot, err)
	}
	return FirmwareApplied{Version: b.Manifest.Version, Slot: slot}, nil
}

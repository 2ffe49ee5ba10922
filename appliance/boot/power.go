package boot

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The ACPI power button: the kernel's button driver (module "button")
// reports a press as a key event (KEY_POWER) on an input device named
// PowerButtonName, which evdev (module "evdev") shows as
// /dev/input/eventN. QEMU's system_powerdown presses it.
const (
	PowerButtonName = "Power Button"

	// struct input_event on 64-bit Linux (linux/input.h): a struct
	// timeval (16 bytes), __u16 type, __u16 code, __s32 value.
	inputEventSize = 24
	evKey          = 0x01 // EV_KEY
	keyPower       = 116  // KEY_POWER
	keyPressed     = 1    // value of a key press (0 release, 2 repeat)
)

// watchPowerButton waits (at most DeviceWait) for the power button's
// input devices and then reads their events in the background: a press
// sends this process powerOffSignal, the signal the supervisor takes for
// a clean power off (stop the services, sync, unmount, power off).
func watchPowerButton(log *slog.Logger) {
	var devs []string
	deadline := time.Now().Add(DeviceWait)
	for {
		devs = powerButtons()
		if len(devs) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling sysfs: devices appear asynchronously
	}
	if len(devs) == 0 {
		log.Warn("boot: no ACPI power button; a press of it will not power the box off")
		return
	}
	for _, d := range devs {
		f, err := os.Open(d)
		if err != nil {
			log.Warn("boot: power button", "dev", d, "err", err)
			continue
		}
		log.Info("boot: watching the power button", "dev", d)
		go readPowerButton(log, f)
	}
}

// powerButtons lists the /dev/input/event* devices named PowerButtonName
// (ACPI may give two: the fixed-feature button and a PNP0C0C device).
func powerButtons() []string {
	names, _ := filepath.Glob("/sys/class/input/event*/device/name")
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(b)) != PowerButtonName {
			continue
		}
		out = append(out, "/dev/input/"+filepath.Base(filepath.Dir(filepath.Dir(n))))
	}
	return out
}

// readPowerButton reads input events from f until it fails, and asks for
// a power off on each press of KEY_POWER.
func readPowerButton(log *slog.Logger, f *os.File) {
	defer f.Close()
	buf := make([]byte, 64*inputEventSize)
	for {
		n, err := f.Read(buf)
		if err != nil {
			log.Warn("boot: power button", "dev", f.Name(), "err", err)
			return
		}
		if powerPressed(buf[:n]) {
			log.Info("boot: power button pressed; powering off", "dev", f.Name())
			unix.Kill(os.Getpid(), powerOffSignal)
		}
	}
}

// powerPressed reports whether events (whole struct input_event records,
// as read from an evdev device) hold a press of KEY_POWER.
func powerPressed(events []byte) bool {
	for ; len(events) >= inputEventSize; events = events[inputEventSize:] {
		typ := binary.NativeEndian.Uint16(events[16:])
		code := binary.NativeEndian.Uint16(events[18:])
		value := int32(binary.NativeEndian.Uint32(events[20:]))
		if typ == evKey && code == keyPower && value == keyPressed {
			return true
		}
	}
	return false
}

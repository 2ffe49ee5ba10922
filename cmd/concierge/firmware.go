package main

import (
	"flag"
	"fmt"
	"os"

	"concierge/appliance/control"
	"concierge/internal/firmware"
)

// firmware is "firmware status", "firmware apply [-boot DIR] FILE" and
// "firmware version".
func (c *cli) firmware(args []string) error {
	verb, args, err := c.sub("firmware", args, map[string]string{
		"apply":   "[-boot DIR] FILE   verify a firmware bundle and install it into the inactive slot of the boot partition (mounted on DIR; on the box /boot) for one trial boot",
		"status":  "       the running firmware's version and slot, and the slots of the boot partition",
		"version": "       the version of this binary",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "apply":
		return c.firmwareApply(args)
	case "status":
		var st control.FirmwareStatus
		if err := c.call(control.OpFirmwareStatus, nil, &st); err != nil {
			return err
		}
		slot := st.Slot
		if slot == "" {
			slot = "none (not booted from a firmware image)"
		}
		fmt.Fprintf(c.stdout, "version %s, slot %s\n", st.Version, slot)
		for _, s := range st.Slots {
			state := "good"
			switch {
			case !s.Good:
				state = "failed its trial"
			case s.Trial:
				state = "on trial"
			}
			next := ""
			if s.BootsNext {
				next = ", boots next"
			}
			fmt.Fprintf(c.stdout, "  slot %s: %s, %s%s\n", s.Slot, s.Version, state, next)
		}
		return nil
	default:
		fmt.Fprintln(c.stdout, firmware.Version)
		return nil
	}
}

func (c *cli) firmwareApply(args []string) error {
	fs := flag.NewFlagSet("firmware apply", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	boot := fs.String("boot", "", "the mounted boot partition (default on the box: "+firmware.BootMount+")")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if err := nargs(fs.Args(), 1, 1, "one FILE"); err != nil {
		return err
	}
	file := fs.Arg(0)
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := firmware.Read(f, firmware.PublicKey)
	if err != nil {
		return fmt.Errorf("%s refused: %w", file, err)
	}
	fmt.Fprintf(c.stdout, "%s: verified: version %s, kernel %s\n", file, b.Manifest.Version, b.Manifest.Kernel)
	running := os.Getenv(firmware.SlotEnv)
	dir := *boot
	if dir == "" {
		if running == "" {
			return fmt.Errorf("not running from a firmware image: give -boot DIR, the mounted boot partition, to install")
		}
		dir = firmware.BootMount
	}
	if running == "" {
		es, err := firmware.Entries(dir)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return fmt.Errorf("%s has no slot entries: is it a concierge boot partition?", dir)
		}
		running = es[0].Slot
	}
	slot, err := firmware.Install(dir, b, running)
	if err != nil {
		return fmt.Errorf("installing into %s: %w", dir, err)
	}
	fmt.Fprintf(c.stdout, "installed version %s into slot %s on trial: the next boot starts it once, and it stays only if it comes up healthy\n", b.Manifest.Version, slot)
	return nil
}

// stopBox is "reboot" and "poweroff": the box stops its services and
// restarts or switches off (op reboot or poweroff; refused when the
// server is not the box's init).
func (c *cli) stopBox(op, done string, args []string) error {
	if err := nargs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	if err := c.call(op, nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, done)
	return nil
}

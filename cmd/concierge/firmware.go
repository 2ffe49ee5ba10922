package main

import (
	"fmt"
	"os"

	"concierge/internal/firmware"
)

// firmware checks firmware bundles. Installing a verified bundle into the
// inactive slot is the next step of issue 14 (see docs/firmware.md).
func (c *cli) firmware(args []string) error {
	verb, args, err := c.sub("firmware", args, map[string]string{
		"apply":   "FILE   verify a firmware bundle's signature and hashes",
		"version": "       the version of this binary",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "apply":
		if err := nargs(args, 1, 1, "one FILE"); err != nil {
			return err
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := firmware.Read(f, firmware.PublicKey)
		if err != nil {
			return fmt.Errorf("%s refused: %w", args[0], err)
		}
		fmt.Fprintf(c.stdout, "%s: verified: version %s, kernel %s\n", args[0], b.Manifest.Version, b.Manifest.Kernel)
		return fmt.Errorf("installing into the inactive slot is not implemented yet")
	default:
		fmt.Fprintln(c.stdout, firmware.Version)
		return nil
	}
}

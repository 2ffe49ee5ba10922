package main

import (
	"fmt"
	"strings"

	"concierge/appliance/control"
	"concierge/appliance/diag"
)

// check runs the diagnostics: "concierge check dns". It exits with an
// error when a check fails.
func (c *cli) check(args []string) error {
	if _, _, err := c.sub("check", args, map[string]string{
		"dns": "   MX and address records of the mail domains, reverse DNS, banner, port 25, relaying",
	}); err != nil {
		return err
	}
	var rep control.DNSReport
	if err := c.call(control.OpCheckDNS, nil, &rep); err != nil {
		return err
	}
	for _, ch := range rep.Checks {
		fmt.Fprintf(c.stdout, "%-4s  %-14s  %s\n", ch.Status, ch.Kind, ch.Message)
	}
	fmt.Fprintln(c.stdout, strings.ToUpper(rep.Summary()[:1])+rep.Summary()[1:]+".")
	if n := rep.Count(diag.Fail); n > 0 {
		return fmt.Errorf("%d of %d checks failed", n, len(rep.Checks))
	}
	return nil
}

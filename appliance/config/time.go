package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"concierge/appliance/timesync"
)

// Time holds the settings of the box's clock (appliance/timesync).
type Time struct {
	// NTPServers are the time servers (host names or IP addresses, each
	// with an optional :port), asked in turn; empty turns time keeping
	// off.
	NTPServers []string `json:"ntp_servers"`
	// SetClock is whether the box sets its own clock from them: auto (on
	// when the server runs as the firmware of a box, off elsewhere, such
	// as "make run" on a workstation), on or off. Off only measures.
	SetClock string `json:"set_clock"`
}

// The values of time.set_clock.
const (
	SetClockAuto = "auto"
	SetClockOn   = "on"
	SetClockOff  = "off"
)

// DefaultTime returns the time defaults: timesync's servers, auto.
func DefaultTime() Time {
	return Time{NTPServers: slices.Clone(timesync.DefaultServers), SetClock: SetClockAuto}
}

func (t *Time) validate(p string) Errors {
	var errs Errors
	seen := map[string]bool{}
	for i, s := range t.NTPServers {
		f := fmt.Sprintf("%s.ntp_servers[%d]", p, i)
		if err := checkTimeServer(s); err != nil {
			errs = append(errs, fieldErr(f, "%v", err))
		}
		if seen[s] {
			errs = append(errs, fieldErr(f, "%q is listed twice", s))
		}
		seen[s] = true
	}
	if !slices.Contains([]string{SetClockAuto, SetClockOn, SetClockOff}, t.SetClock) {
		errs = append(errs, fieldErr(p+".set_clock", "must be auto, on or off, not %q", t.SetClock))
	}
	return errs
}

// checkTimeServer accepts a host name or an IP address, with an optional
// port ("ntp.example.net", "192.168.1.1", "[2001:db8::1]:123").
func checkTimeServer(s string) error {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", s, port)
		}
		host = h
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if strings.ContainsAny(host, "[]:") || checkHostname(host) != nil {
		return fmt.Errorf("%q is not a host name or IP address (like pool.ntp.org or 192.168.1.1)", s)
	}
	return nil
}

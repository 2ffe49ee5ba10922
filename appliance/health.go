package appliance

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concierge/appliance/config"
	"concierge/internal/firmware"
	"concierge/nbt/nameservice"
	"concierge/nbt/wire"
)

// The health check of a firmware on trial, in one place.
var (
	// HealthDeadline bounds the whole check: a trial firmware whose
	// services do not all answer within it is not marked good, and the
	// next boot returns to the old slot.
	HealthDeadline = 2 * time.Minute
	// HealthProbeTimeout bounds one probe (connect and the first answer).
	HealthProbeTimeout = 5 * time.Second
	// HealthRetry is the pause before a failed probe is tried again.
	HealthRetry = time.Second
)

// probe is one check that a service answers, from inside the box.
type probe struct {
	name string // "smtp", "pop3", "nbt", "web"
	addr string // where it asks
	ask  func(ctx context.Context, addr string) error
}

// healthProbes lists what must answer before a trial firmware is marked
// good: an SMTP banner, a POP3 greeting, the box's own NetBIOS name
// answered on port 137, and the setup page over HTTP, each on the
// addresses cfg gives. A service the settings turn off is not probed.
func healthProbes(cfg *config.Config) []probe {
	var ps []probe
	switch {
	case cfg.SMTP.MX != "":
		ps = append(ps, probe{"smtp", localAddr(cfg.SMTP.MX), bannerProbe("220", false)})
	case cfg.SMTP.Submission != "":
		ps = append(ps, probe{"smtp", localAddr(cfg.SMTP.Submission), bannerProbe("220", false)})
	case cfg.SMTP.SubmissionTLS != "":
		ps = append(ps, probe{"smtp", localAddr(cfg.SMTP.SubmissionTLS), bannerProbe("220", true)})
	}
	switch {
	case cfg.POP3.Listen != "":
		ps = append(ps, probe{"pop3", localAddr(cfg.POP3.Listen), bannerProbe("+OK", false)})
	case cfg.POP3.ListenTLS != "":
		ps = append(ps, probe{"pop3", localAddr(cfg.POP3.ListenTLS), bannerProbe("+OK", true)})
	}
	if cfg.NBT.Enabled {
		ps = append(ps, probe{"nbt", cfg.NBT.Name, nbtProbe(cfg.NBT)})
	}
	switch {
	case cfg.Web.HTTPListen != "":
		ps = append(ps, probe{"web", localAddr(cfg.Web.HTTPListen), httpProbe(false)})
	case cfg.Web.DevListen != "":
		ps = append(ps, probe{"web", localAddr(cfg.Web.DevListen), httpProbe(false)})
	case cfg.Web.HTTPSListen != "":
		ps = append(ps, probe{"web", localAddr(cfg.Web.HTTPSListen), httpProbe(true)})
	}
	return ps
}

// localAddr is where the box reaches its own listener: the listen
// address, or loopback for one on every address (":25").
func localAddr(listen string) string {
	host, port, _ := net.SplitHostPort(listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// checkHealth runs every probe, each retried until it passes or the
// deadline passes; it returns the error of the first probe that did not
// pass. It runs on the caller's goroutine (no goroutines of its own), so
// a test can run it in a network namespace.
func checkHealth(ctx context.Context, probes []probe, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for _, p := range probes {
		for {
			pctx, pcancel := context.WithTimeout(ctx, HealthProbeTimeout)
			err := p.ask(pctx, p.addr)
			pcancel()
			if err == nil {
				break
			}
			t := time.NewTimer(HealthRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%s (%s) did not answer within %v: %w", p.name, p.addr, deadline, err)
			case <-t.C:
			}
		}
	}
	return nil
}

// bannerProbe expects the server's first line to start with prefix (an
// SMTP banner "220 ...", a POP3 greeting "+OK ...").
func bannerProbe(prefix string, useTLS bool) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		c, err := dialProbe(ctx, addr, useTLS)
		if err != nil {
			return err
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("no greeting: %w", err)
		}
		if !strings.HasPrefix(line, prefix) {
			return fmt.Errorf("greeting %q, want %q", strings.TrimSpace(line), prefix)
		}
		return nil
	}
}

// httpProbe asks for the setup page's / and takes any answer that is not
// a server error (a redirect to the login or to HTTPS is an answer). It
// writes the request itself: net/http would dial on another goroutine.
func httpProbe(useTLS bool) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		c, err := dialProbe(ctx, addr, useTLS)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\nUser-Agent: concierge-health\r\n\r\n", addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return fmt.Errorf("no HTTP answer: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		return nil
	}
}

func dialProbe(ctx context.Context, addr string, useTLS bool) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if useTLS {
		// The box's own certificate may be self-signed: the probe asks
		// whether the service answers, not who it is.
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	return c, nil
}

// nbtProbe sends a unicast name query for the box's own name<00> (RFC
// 1002 4.2.12) to port 137 of the first LAN interface's address and
// expects a positive answer. The socket is bound to that interface: the
// name service's sockets are, and a packet from the box to its own
// address counts as arriving on the interface it was sent from.
func nbtProbe(c config.NBT) func(context.Context, string) error {
	return func(ctx context.Context, name string) error {
		n, err := wire.MakeName(name, 0x00, c.Scope)
		if err != nil {
			return err
		}
		ifs, err := nameservice.Interfaces(c.Interfaces)
		if err != nil {
			return err
		}
		ifc := ifs[0]
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifc.Name)
			})
			return errors.Join(err, serr)
		}}
		pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort(ifc.Addr.String(), "0"))
		if err != nil {
			return err
		}
		defer pc.Close()
		if dl, ok := ctx.Deadline(); ok {
			pc.SetDeadline(dl)
		}
		id := uint16(time.Now().UnixNano())
		q, err := wire.NewQuery(id, n, false, false).Pack()
		if err != nil {
			return err
		}
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ifc.Addr, nameservice.DefaultPort))
		if _, err := pc.WriteTo(q, to); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		for {
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no answer to a name query for %s on %s: %w", n.Base(), to, err)
			}
			p, err := wire.Parse(buf[:m])
			if err != nil || p.ID != id {
				continue
			}
			if p.Rcode != wire.RcodeOK || len(p.Answers) == 0 {
				return fmt.Errorf("name query for %s on %s: rcode %d, %d answers", n.Base(), to, p.Rcode, len(p.Answers))
			}
			return nil
		}
	}
}

// markGoodWhenHealthy marks slot's trial entry on the boot partition
// mounted on bootDir good once every probe passed (a firmware on trial,
// the first boot after an update, becomes the one that keeps booting).
// When the deadline passes first it logs the probe that failed, leaves
// the entry and calls fallBack (on the box: reboot), so that the next
// boot returns to the slot the box was updated from. A slot not on trial
// is left alone, unprobed.
func markGoodWhenHealthy(ctx context.Context, log *slog.Logger, bootDir, slot string, probes []probe, deadline time.Duration, fallBack func() error) {
	es, err := firmware.Entries(bootDir)
	if err != nil {
		log.Error("firmware: reading the boot entries", "err", err)
		return
	}
	trial := false
	for _, e := range es {
		trial = trial || e.Slot == slot && e.Trial
	}
	if !trial {
		return
	}
	names := make([]string, len(probes))
	for i, p := range probes {
		names[i] = p.name
	}
	log.Info("firmware: on trial; checking that the services answer", "slot", slot, "checks", strings.Join(names, ","), "within", deadline)
	start := time.Now()
	if err := checkHealth(ctx, probes, deadline); err != nil {
		if ctx.Err() != nil {
			log.Warn("firmware: stopped before the health check passed; slot not marked good", "slot", slot)
			return
		}
		log.Error("firmware: the new firmware is not healthy; slot not marked good, rebooting into the old slot", "slot", slot, "err", err)
		if err := fallBack(); err != nil {
			log.Error("firmware: reboot into the old slot", "err", err)
		}
		return
	}
	switch err := firmware.MarkGood(bootDir, slot); {
	case err == nil:
		log.Info("firmware: the new firmware is up; slot marked good", "slot", slot, "version", firmware.Version, "checked", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, firmware.ErrNotTrial):
	default:
		log.Error("firmware: marking the slot good", "slot", slot, "err", err)
	}
}

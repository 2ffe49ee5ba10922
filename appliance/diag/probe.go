package diag

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"concierge/internal/replyguard"
)

// Prober makes the SMTP test connections of the checks.
type Prober interface {
	// Banner connects to addr and returns the server's greeting line.
	Banner(ctx context.Context, addr netip.AddrPort) (string, error)
	// Relay connects from src to dst, greets with helo and asks, with a
	// null sender, to take mail for rcpt. It returns the reply that
	// decided (to MAIL or RCPT) and whether the recipient was accepted.
	// It never sends DATA: nothing is ever relayed.
	Relay(ctx context.Context, src netip.Addr, dst netip.AddrPort, helo, rcpt string) (reply string, accepted bool, err error)
}

// SMTPProber is the real Prober: plain SMTP over TCP.
type SMTPProber struct{}

func dial(ctx context.Context, src netip.Addr, dst netip.AddrPort) (*textproto.Conn, error) {
	d := net.Dialer{Timeout: ProbeTimeout}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	conn, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(ProbeTimeout)
	}
	conn.SetDeadline(deadline)
	return textproto.NewConn(replyguard.New(conn)), nil
}

// reply is a server's reply as one line: the code and its first line.
func reply(code int, msg string) string {
	first, _, _ := strings.Cut(msg, "\n")
	return fmt.Sprintf("%d %s", code, first)
}

// Banner implements Prober.
func (SMTPProber) Banner(ctx context.Context, addr netip.AddrPort) (string, error) {
	tp, err := dial(ctx, netip.Addr{}, addr)
	if err != nil {
		return "", err
	}
	defer tp.Close()
	code, msg, err := tp.ReadResponse(0)
	if err != nil && code == 0 {
		return "", err
	}
	tp.PrintfLine("QUIT")
	return reply(code, msg), nil
}

// Relay implements Prober.
func (SMTPProber) Relay(ctx context.Context, src netip.Addr, dst netip.AddrPort, helo, rcpt string) (string, bool, error) {
	tp, err := dial(ctx, src, dst)
	if err != nil {
		return "", false, err
	}
	defer tp.Close()
	defer tp.PrintfLine("QUIT")
	if code, msg, err := tp.ReadResponse(220); err != nil {
		return "", false, fmt.Errorf("greeting %s: %v", reply(code, msg), err)
	}
	steps := []struct {
		cmd  string
		want int
	}{
		{"EHLO " + helo, 250},
		{"MAIL FROM:<>", 250},
		{"RCPT TO:<" + rcpt + ">", 25},
	}
	for _, s := range steps {
		if err := tp.PrintfLine("%s", s.cmd); err != nil {
			return "", false, err
		}
		code, msg, err := tp.ReadResponse(s.want)
		if code == 0 {
			return "", false, err
		}
		if err != nil {
			if strings.HasPrefix(s.cmd, "EHLO") {
				return "", false, fmt.Errorf("EHLO answered %s", reply(code, msg))
			}
			return reply(code, msg), false, nil
		}
		if strings.HasPrefix(s.cmd, "RCPT") {
			tp.PrintfLine("RSET")
			tp.ReadResponse(0)
			return reply(code, msg), true, nil
		}
	}
	return "", false, nil
}

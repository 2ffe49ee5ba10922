package smtpd

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"

	"concierge/internal/mailaddr"
)

// Spool is the box as a spooler (backup MX) for relay domains, and the
// place that hears of SMTP traffic for a dial-up link's idle timer. The
// appliance implements it; nil turns ETRN off (answered 502 by the
// library, and not advertised).
type Spool interface {
	// IsRelayDomain reports whether mail for domain is accepted from
	// anyone and held until an authorized client sends ETRN for it.
	IsRelayDomain(domain string) bool
	// Release answers "ETRN node" (RFC 1985) from the client at ip,
	// logged in as user ("" if not). node is a domain, or "@domain" for
	// the domain and its subdomains. The reply is one of RFC 1985's:
	// 250, 251, 252, 253, 458, 459.
	Release(node string, ip netip.Addr, user string) *smtp.SMTPError
	// Activity is told of each new connection (messages 0) and of each
	// message accepted from the client at ip.
	Activity(ip netip.Addr, messages int, bytes int64)
}

// RFC 1985 section 5: the replies to ETRN.
const (
	CodeETRNStarted     = 250 // OK, queuing for node started
	CodeETRNNoMessages  = 251 // OK, no messages waiting for node
	CodeETRNPending     = 252 // OK, pending messages for node started
	CodeETRNPendingN    = 253 // OK, <n> pending messages for node started
	CodeETRNUnable      = 458 // Unable to queue messages for node
	CodeETRNNotAllowed  = 459 // Node not allowed: <reason>
	codeSyntaxError     = 500
	codeSyntaxParameter = 501
)

// etrn answers an ETRN command line in the front end.
//
// Why here: go-smtp has no hook for extra verbs or EHLO keywords (its
// unknown-verb reply counts toward its error limit), and the front end
// already sees every command line before the library and writes replies
// of its own between the library's (one line per read, so the order of
// replies to pipelined commands holds). Answering ETRN here keeps the
// library untouched; the EHLO keyword is added where the front end edits
// the greeting.
func (c *frontConn) etrn(sp Spool, arg string) string {
	if !c.greeted {
		return "503 5.5.1 Send EHLO first\r\n"
	}
	if c.inTransaction {
		// RFC 1985 section 3: not within a mail transaction.
		return "503 5.5.1 ETRN is not allowed within a mail transaction\r\n"
	}
	node, err := ParseETRN(arg)
	if err != nil {
		return fmt.Sprintf("%d 5.5.4 %s\r\n", codeSyntaxParameter, err)
	}
	r := sp.Release(node, c.remoteIP(), c.user)
	return FormatReply(r)
}

// ParseETRN checks the argument of ETRN (RFC 1985 section 3): a domain,
// "@domain" for the domain and its subdomains, or "#queue" (not offered
// here). It returns the node in lower case.
func ParseETRN(arg string) (string, error) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return "", fmt.Errorf("ETRN needs a domain: ETRN example.org")
	}
	if strings.HasPrefix(arg, "#") {
		return "", fmt.Errorf("named queues are not offered; give a domain")
	}
	at := strings.HasPrefix(arg, "@")
	d, err := mailaddr.Domain(strings.TrimPrefix(arg, "@"))
	if err != nil || strings.HasPrefix(d, "[") {
		return "", fmt.Errorf("not a domain: %q", oneLine(arg))
	}
	if at {
		d = "@" + d
	}
	return d, nil
}

// FormatReply writes an SMTP reply line with its enhanced code when it
// has one.
func FormatReply(r *smtp.SMTPError) string {
	if r.EnhancedCode == smtp.NoEnhancedCode || r.EnhancedCode == (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d %s\r\n", r.Code, oneLine(r.Message))
	}
	e := r.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", r.Code, e[0], e[1], e[2], oneLine(r.Message))
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func (c *frontConn) remoteIP() netip.Addr {
	ap, err := netip.ParseAddrPort(c.raw.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

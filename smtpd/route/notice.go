package route

import (
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"concierge/internal/mailaddr"
	"concierge/smtpd/dsn"
	"concierge/smtpd/queue"
)

// MaxReturnFull is the largest message returned whole in a notice when
// its sender asked for RET=FULL; a larger one gets its headers only (RFC
// 3461 4.3 leaves the limit to the MTA).
const MaxReturnFull = 1 << 20

// Notice is a delivery status notification ready to store: the message,
// with the local users and remote addresses it goes to.
type Notice struct {
	// To is the address the notice is for (its To: header).
	To      string
	Users   []string
	Remote  []string
	Message []byte
}

// ErrNobody is returned when a notice has nowhere to go (no postmaster).
var ErrNobody = errors.New("route: a notice failed and there is no postmaster user to receive it")

// NoticeSettings are the settings that shape notices.
type NoticeSettings struct {
	// Hostname is the box's name (Reporting-MTA).
	Hostname string
	// PostmasterCopy sends the postmaster a copy of every failure notice.
	PostmasterCopy bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Notice builds the notification for a queue notice and decides where it
// goes: to the original sender (into its Maildir when it is ours, through
// the queue otherwise; for forwarded copies by way of the SRS address
// they went out with, reversed on the way), and for a
// failed notice (null sender: a double bounce) to the postmaster, never
// back into the loop (RFC 5321 6.1, 6.2). A delay warning nobody can take
// is dropped: nil, nil. msg is the queued message, which starts at
// n.Env.BodyOffset.
func (d *Directory) Notice(set NoticeSettings, n queue.Notice, msg io.ReaderAt) (*Notice, error) {
	primary := d.primary
	if primary == "" {
		primary = set.Hostname
	}
	sender := n.Env.From
	if forwarded(n.Recipients) {
		// The copies went out with our SRS sender: their failure comes
		// back through it, as a bounce from the next hop would.
		sender = d.ForwardSender(sender)
	}
	out := &Notice{To: sender}
	double := sender == ""
	if !double {
		a, err := mailaddr.Parse(sender)
		switch {
		case err != nil:
			double = true
		case d.IsLocalDomain(a.Domain):
			users, remote, ok := d.Lookup(a)
			out.Users, out.Remote, double = users, remote, !ok
		default:
			out.Remote = []string{a.String()}
		}
	}
	pm := d.data.Postmaster
	if double {
		if n.Kind != queue.Failure {
			return nil, nil // nobody to tell; a failure, if it comes, goes to the postmaster
		}
		if pm == "" {
			return nil, ErrNobody
		}
		out.To, out.Users, out.Remote = "postmaster@"+primary, []string{pm}, nil
	} else if set.PostmasterCopy && pm != "" && n.Kind == queue.Failure {
		out.Users = appendOnce(out.Users, pm)
	}
	if len(out.Users) == 0 && len(out.Remote) == 0 {
		return nil, errors.New("route: nobody to send the notice to")
	}
	rep := report(set, n, msg, primary)
	rep.To = out.To
	if set.Now != nil {
		rep.Date = set.Now()
	}
	out.Message = rep.Bytes()
	return out, nil
}

// forwarded reports whether every recipient of a notice is an address
// our aliases forward to.
func forwarded(rcpts []queue.Recipient) bool {
	for _, rc := range rcpts {
		if !rc.Forwarded {
			return false
		}
	}
	return len(rcpts) > 0
}

// report turns a queue notice into a DSN report (without its To).
func report(set NoticeSettings, n queue.Notice, msg io.ReaderAt, primary string) *dsn.Report {
	rep := &dsn.Report{ReportingMTA: set.Hostname, From: "MAILER-DAEMON@" + primary,
		QueueID: n.Env.ID, EnvelopeID: n.Env.EnvID, Arrival: n.Env.Received, RetryUntil: n.RetryUntil}
	if msg != nil {
		body := io.NewSectionReader(msg, n.Env.BodyOffset, 1<<62)
		if strings.EqualFold(n.Env.Ret, "FULL") && n.Env.Size <= MaxReturnFull {
			if b, err := io.ReadAll(io.LimitReader(body, MaxReturnFull+1)); err == nil && len(b) <= MaxReturnFull {
				rep.Full = b
			}
		}
		if rep.Full == nil {
			rep.Headers, _ = dsn.Headers(io.NewSectionReader(msg, n.Env.BodyOffset, 1<<62))
		}
	}
	for _, rc := range n.Recipients {
		r := dsn.Recipient{Original: rc.ORcpt, Addr: rc.Addr, Status: rc.Status, Diagnostic: rc.Diagnostic,
			RemoteMTA: rc.RemoteMTA, Reason: strings.TrimPrefix(rc.LastError, "deliver: "), LastAttempt: rc.LastTry}
		switch n.Kind {
		case queue.Failure:
			r.Action = dsn.Failed
		case queue.Delay:
			r.Action = dsn.Delayed
		case queue.Success:
			r.Action, r.Status, r.Reason = dsn.Delivered, "2.0.0", "delivered to the mailbox"
			if rc.Success == "relayed" {
				r.Action, r.Reason = dsn.Relayed, "passed on to "+orUnknown(rc.RemoteMTA)+", which does not report delivery"
			}
		}
		rep.Recipients = append(rep.Recipients, r)
	}
	return rep
}

func orUnknown(s string) string {
	if s == "" {
		return "the next mail server"
	}
	return s
}

// OpenMessage opens a queued message file for Notice; a message that is
// gone yields a notice without its headers.
func OpenMessage(path string) (io.ReaderAt, func()) {
	f, err := os.Open(path)
	if err != nil {
		return nil, func() {}
	}
	return f, func() { f.Close() }
}

// Package dsn writes delivery status notifications: the bounce that tells
// a sender which recipients failed, and the warning that mail is delayed.
// The format is the multipart/report of RFC 6522 with a
// message/delivery-status part (RFC 3464) and the original message's
// headers as text/rfc822-headers. Notices are sent from MAILER-DAEMON with
// the null reverse-path (RFC 5321 4.5.5), so they never cause another
// notice; they are marked Auto-Submitted (RFC 3834 5).
package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// Action of a per-recipient report (RFC 3464 2.3.3).
type Action string

// Actions used here.
const (
	Failed  Action = "failed"
	Delayed Action = "delayed"
)

// Recipient is one recipient's report.
type Recipient struct {
	Addr   string
	Action Action
	// Status is the RFC 3463 code, e.g. "5.1.1".
	Status string
	// Diagnostic is the remote server's reply ("550 5.1.1 ..."), if any.
	Diagnostic string
	// RemoteMTA is the host that gave the reply, if any.
	RemoteMTA string
	// Reason explains the failure in words, for the human-readable part.
	Reason      string
	LastAttempt time.Time
}

// Report is one notice about one message.
type Report struct {
	// ReportingMTA is our host name.
	ReportingMTA string
	// From is the notice's author, MAILER-DAEMON@ the primary domain.
	From string
	// To is who gets it: the original sender (or the postmaster).
	To string
	// QueueID of the original message.
	QueueID string
	// Arrival is when the original message was accepted.
	Arrival time.Time
	// Date of the notice; zero means now.
	Date time.Time
	// RetryUntil is when delivery of delayed recipients stops.
	RetryUntil time.Time
	Recipients []Recipient
	// Headers of the original message (see Headers).
	Headers []byte
	// Boundary and MessageID are generated when empty (tests fix them).
	Boundary  string
	MessageID string
}

// MaxHeaders bounds the original headers copied into a notice.
const MaxHeaders = 64 << 10

// Headers reads the header section of a message (up to the empty line),
// at most MaxHeaders bytes, with CRLF line ends.
func Headers(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxHeaders))
	var b bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" && (err == nil || line != "") {
			break
		}
		if trimmed != "" {
			b.WriteString(trimmed + "\r\n")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return b.Bytes(), err
		}
	}
	return b.Bytes(), nil
}

// Delay reports whether this is a delay warning rather than a failure.
func (r *Report) Delay() bool {
	for _, rc := range r.Recipients {
		if rc.Action != Delayed {
			return false
		}
	}
	return len(r.Recipients) > 0
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Bytes renders the notice as a message with CRLF line ends.
func (r *Report) Bytes() []byte {
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	boundary := r.Boundary
	if boundary == "" {
		boundary = "dsn-" + random(12)
	}
	msgID := r.MessageID
	if msgID == "" {
		msgID = fmt.Sprintf("<%s.%s.dsn@%s>", r.QueueID, random(6), r.ReportingMTA)
	}
	delay := r.Delay()
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	subject := "Undelivered Mail Returned to Sender"
	if delay {
		subject = "Delayed Mail (still being retried)"
	}
	w("From: Mail Delivery System <%s>", r.From)
	w("To: <%s>", r.To)
	w("Subject: %s", subject)
	w("Date: %s", date.Format(time.RFC1123Z))
	w("Message-ID: %s", msgID)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;")
	w("\tboundary=\"%s\"", boundary)
	w("")
	w("This is a delivery status notification in MIME format.")
	w("")

	// Part 1: for people.
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Transfer-Encoding: 8bit")
	w("Content-Description: Notification")
	w("")
	w("This is the mail system at %s.", r.ReportingMTA)
	w("")
	if delay {
		w("Your message could not be delivered yet to the recipients below.")
		w("The mail system keeps trying until %s;", r.RetryUntil.Format(time.RFC1123Z))
		w("you do not need to send it again.")
	} else {
		w("Your message could not be delivered to the recipients below.")
		w("It will not be tried again.")
	}
	w("")
	for _, rc := range r.Recipients {
		w("<%s>:", rc.Addr)
		reason := rc.Reason
		if rc.Diagnostic != "" && rc.RemoteMTA != "" {
			reason = rc.RemoteMTA + " said: " + rc.Diagnostic
		} else if reason == "" {
			reason = rc.Diagnostic
		}
		for _, l := range wrap(reason, 72) {
			w("    %s", l)
		}
		w("")
	}

	// Part 2: for machines (RFC 3464 2.1).
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("Content-Description: Delivery report")
	w("")
	w("Reporting-MTA: dns; %s", r.ReportingMTA)
	if r.QueueID != "" {
		w("X-Concierge-Queue-ID: %s", r.QueueID)
	}
	if !r.Arrival.IsZero() {
		w("Arrival-Date: %s", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		w("")
		w("Final-Recipient: rfc822; %s", rc.Addr)
		w("Action: %s", rc.Action)
		w("Status: %s", statusFor(rc))
		if rc.RemoteMTA != "" {
			w("Remote-MTA: dns; %s", rc.RemoteMTA)
		}
		if rc.Diagnostic != "" {
			w("Diagnostic-Code: smtp; %s", oneLine(rc.Diagnostic))
		} else if rc.Reason != "" {
			w("Diagnostic-Code: X-Concierge; %s", oneLine(rc.Reason))
		}
		if !rc.LastAttempt.IsZero() {
			w("Last-Attempt-Date: %s", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if rc.Action == Delayed && !r.RetryUntil.IsZero() {
			w("Will-Retry-Until: %s", r.RetryUntil.Format(time.RFC1123Z))
		}
	}
	w("")

	// Part 3: the original headers (RFC 6522 3: text/rfc822-headers).
	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
	w("Content-Description: Headers of the original message")
	w("")
	b.Write(r.Headers)
	if len(r.Headers) > 0 && !bytes.HasSuffix(r.Headers, []byte("\n")) {
		w("")
	}
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

// statusFor makes the class of the status match the action (RFC 3464
// 2.3.4: failed is 5.x.x, delayed 4.x.x).
func statusFor(rc Recipient) string {
	s := rc.Status
	if len(s) < 5 || s[1] != '.' {
		s = "X.0.0"
	}
	if rc.Action == Failed {
		return "5" + s[1:]
	}
	return "4" + s[1:]
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// wrap splits text into lines of at most n bytes at spaces.
func wrap(s string, n int) []string {
	var out []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > n {
			out = append(out, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		out = append(out, line)
	}
	return out
}

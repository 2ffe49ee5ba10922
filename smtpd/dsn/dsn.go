// Package dsn writes delivery status notifications: the bounce that tells
// a sender which recipients failed, the warning that mail is delayed, and
// the success notice a sender asked for (RFC 3461 NOTIFY=SUCCESS). The
// format is the multipart/report of RFC 6522, built with mime/multipart,
// with a message/delivery-status part (RFC 3464) and the original
// message: its headers as text/rfc822-headers, or all of it as
// message/rfc822 when the sender asked for RET=FULL (RFC 3461 4.3).
// Notices are sent from MAILER-DAEMON with the null reverse-path (RFC 5321
// 4.5.5), so they never cause another notice; they are marked
// Auto-Submitted (RFC 3834 5).
package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"
)

// Action of a per-recipient report (RFC 3464 2.3.3).
type Action string

// Actions used here.
const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered" // into a mailbox here (RFC 3461 5.2.3)
	Relayed   Action = "relayed"   // to a next hop without DSN (RFC 3461 5.2.2)
)

// Recipient is one recipient's report.
type Recipient struct {
	// Original is the ORCPT parameter the recipient came with, as
	// "type;address" (RFC 3461 4.2), empty if none.
	Original string
	Addr     string
	Action   Action
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
	// EnvelopeID is the ENVID parameter of the original message (RFC 3461
	// 4.4), empty if none.
	EnvelopeID string
	// Arrival is when the original message was accepted.
	Arrival time.Time
	// Date of the notice; zero means now.
	Date time.Time
	// RetryUntil is when delivery of delayed recipients stops.
	RetryUntil time.Time
	Recipients []Recipient
	// Headers of the original message (see Headers).
	Headers []byte
	// Full, when not nil, is the whole original message, returned instead
	// of its headers (RET=FULL).
	Full []byte
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

// kind is what the notice reports: the action all its recipients share,
// or Failed when they differ (a failure is what matters most).
func (r *Report) kind() Action {
	if len(r.Recipients) == 0 {
		return Failed
	}
	k := r.Recipients[0].Action
	for _, rc := range r.Recipients[1:] {
		if rc.Action != k {
			return Failed
		}
	}
	return k
}

// Delay reports whether this is a delay warning rather than a failure.
func (r *Report) Delay() bool { return len(r.Recipients) > 0 && r.kind() == Delayed }

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// texts are the subject and the explanation of each kind of notice.
var texts = map[Action]struct{ subject, intro string }{
	Failed: {"Undelivered Mail Returned to Sender",
		"Your message could not be delivered to the recipients below.\r\nIt will not be tried again."},
	Delayed: {"Delayed Mail (still being retried)",
		"Your message could not be delivered yet to the recipients below.\r\nThe mail system keeps trying until %s;\r\nyou do not need to send it again."},
	Delivered: {"Successful Mail Delivery Report",
		"Your message was delivered to the recipients below, as you asked to be told."},
	Relayed: {"Successful Mail Delivery Report",
		"Your message was passed on to the recipients' mail servers below, as you\r\n" +
			"asked to be told. Those servers do not report delivery, so this is the\r\nlast notice you will get about it."},
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
	kind := r.kind()
	text := texts[kind]
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: Mail Delivery System <%s>", r.From)
	w("To: <%s>", r.To)
	w("Subject: %s", text.subject)
	w("Date: %s", date.Format(time.RFC1123Z))
	w("Message-ID: %s", msgID)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	ct := mime.FormatMediaType("multipart/report", map[string]string{"report-type": "delivery-status", "boundary": boundary})
	w("Content-Type: %s", strings.ReplaceAll(ct, "; ", ";\r\n\t")) // folded (RFC 5322 2.2.3)
	w("")
	w("This is a delivery status notification in MIME format.")
	w("")
	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		panic("dsn: bad boundary " + boundary) // only tests set it
	}
	part := func(contentType, description string, extra ...string) io.Writer {
		h := textproto.MIMEHeader{"Content-Type": {contentType}, "Content-Description": {description}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		pw, _ := mw.CreatePart(h) // writes to a bytes.Buffer: no error
		return pw
	}

	// Part 1: for people.
	var t bytes.Buffer
	tw := func(format string, args ...any) { fmt.Fprintf(&t, format+"\r\n", args...) }
	tw("This is the mail system at %s.", r.ReportingMTA)
	tw("")
	if kind == Delayed {
		tw(text.intro, r.RetryUntil.Format(time.RFC1123Z))
	} else {
		tw("%s", text.intro)
	}
	tw("")
	for _, rc := range r.Recipients {
		tw("<%s>:", rc.Addr)
		reason := rc.Reason
		if rc.Diagnostic != "" && rc.RemoteMTA != "" {
			reason = rc.RemoteMTA + " said: " + rc.Diagnostic
		} else if reason == "" {
			reason = rc.Diagnostic
		}
		for _, l := range wrap(reason, 72) {
			tw("    %s", l)
		}
		tw("")
	}
	// One line end before the next boundary, whose own CRLF makes the
	// blank line.
	part("text/plain; charset=utf-8", "Notification", "Content-Transfer-Encoding", "8bit").Write(append(bytes.TrimRight(t.Bytes(), "\r\n"), "\r\n"...))

	// Part 2: for machines (RFC 3464 2.1): per-message fields, then one
	// block per recipient.
	t.Reset()
	if r.EnvelopeID != "" {
		tw("Original-Envelope-Id: %s", oneLine(r.EnvelopeID)) // RFC 3464 2.2.1
	}
	tw("Reporting-MTA: dns; %s", r.ReportingMTA)
	if r.QueueID != "" {
		tw("X-Concierge-Queue-ID: %s", r.QueueID)
	}
	if !r.Arrival.IsZero() {
		tw("Arrival-Date: %s", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		tw("")
		if typ, addr, ok := strings.Cut(rc.Original, ";"); ok {
			tw("Original-Recipient: %s;%s", oneLine(typ), oneLine(addr)) // RFC 3464 2.3.1
		}
		tw("Final-Recipient: rfc822; %s", rc.Addr)
		tw("Action: %s", rc.Action)
		tw("Status: %s", statusFor(rc))
		if rc.RemoteMTA != "" {
			tw("Remote-MTA: dns; %s", rc.RemoteMTA)
		}
		if rc.Diagnostic != "" {
			tw("Diagnostic-Code: smtp; %s", oneLine(rc.Diagnostic))
		} else if rc.Reason != "" {
			tw("Diagnostic-Code: X-Concierge; %s", oneLine(rc.Reason))
		}
		if !rc.LastAttempt.IsZero() {
			tw("Last-Attempt-Date: %s", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if rc.Action == Delayed && !r.RetryUntil.IsZero() {
			tw("Will-Retry-Until: %s", r.RetryUntil.Format(time.RFC1123Z))
		}
	}
	part("message/delivery-status", "Delivery report").Write(t.Bytes())

	// Part 3: the original message (RFC 3461 4.3), or its headers (RFC
	// 6522 3: text/rfc822-headers).
	if r.Full != nil {
		part("message/rfc822", "The original message").Write(r.Full)
	} else {
		pw := part("text/rfc822-headers", "Headers of the original message")
		pw.Write(r.Headers)
		if len(r.Headers) > 0 && !bytes.HasSuffix(r.Headers, []byte("\n")) {
			pw.Write([]byte("\r\n"))
		}
	}
	mw.Close()
	return b.Bytes()
}

// statusFor makes the class of the status match the action (RFC 3464
// 2.3.4: failed is 5.x.x, delayed 4.x.x, delivered and relayed 2.x.x).
func statusFor(rc Recipient) string {
	s := rc.Status
	if len(s) < 5 || s[1] != '.' {
		s = "X.0.0"
	}
	switch rc.Action {
	case Failed:
		return "5" + s[1:]
	case Delayed:
		return "4" + s[1:]
	}
	return "2" + s[1:]
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

package link

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"concierge/internal/hostaddr"
	"concierge/internal/replyguard"
)

// deadline is when a release conversation must end: ctx's deadline, or
// DefaultReleaseTimeout from now.
func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(DefaultReleaseTimeout)
}

// ReleaseResult is the ISP's answer to one release request.
type ReleaseResult struct {
	Domain string    `json:"domain"`
	When   time.Time `json:"when"`
	Method string    `json:"method"`
	Code   int       `json:"code"`  // the reply code (0: no answer)
	Reply  string    `json:"reply"` // the reply as received, or the error
	OK     bool      `json:"ok"`
	// Words says what happened for a person.
	Words string `json:"words"`
}

// etrnWords explains the replies of RFC 1985 section 5.
func etrnWords(code int, domain string) (string, bool) {
	switch code {
	case 250:
		return "the ISP started sending the mail it held for " + domain, true
	case 251:
		return "the ISP holds no mail for " + domain, true
	case 252, 253:
		return "the ISP started sending the pending mail for " + domain, true
	case 458:
		return "the ISP could not start sending the mail for " + domain + " now (458); the next link-up asks again", false
	case 459:
		return "the ISP does not hold mail for " + domain + " for this box (459): check the domain with the ISP; the next link-up asks again", false
	case 550, 554:
		return fmt.Sprintf("the ISP refused ETRN for %s from this box (%d): ask the ISP to allow it; the next link-up asks again", domain, code), false
	case 500, 501, 502:
		return fmt.Sprintf("the ISP's mail host does not take ETRN (%d): ask the ISP which method it uses", code), false
	}
	return fmt.Sprintf("the ISP answered %d to ETRN for %s; the next link-up asks again", code, domain), false
}

// releaseHeld asks the ISP to send the held inbound mail, one domain at a
// time, and keeps the results for the status.
func (m *Manager) releaseHeld(ctx context.Context, set Settings) {
	if set.Method == MethodNone || set.Method == "" || len(set.Domains) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, or(set.ReleaseTimeout, DefaultReleaseTimeout))
	defer cancel()
	var results []ReleaseResult
	host, port := set.MailHost, "25"
	if set.Method == MethodFinger {
		host, port = set.FingerHost, "79"
		if host == "" {
			h, _, _ := net.SplitHostPort(set.MailHost)
			host = net.JoinHostPort(h, "79")
		}
	}
	addr, err := hostaddr.Resolve(ctx, set.Lookup, host, port)
	switch {
	case err != nil:
		for _, d := range set.Domains {
			results = append(results, ReleaseResult{Domain: d, When: time.Now().UTC(), Method: set.Method, Reply: err.Error(),
				Words: "the ISP's host could not be looked up (" + err.Error() + "); the next link-up asks again"})
		}
	case set.Method == MethodETRN:
		results = ETRN(ctx, addr, set.Hostname, set.Domains)
	case set.Method == MethodFinger:
		for _, d := range set.Domains {
			results = append(results, Finger(ctx, addr, d))
		}
	}
	for _, r := range results {
		if r.OK {
			m.Log.Info("link: held mail released", "method", r.Method, "domain", r.Domain, "reply", r.Reply, "words", r.Words)
		} else {
			m.Log.Warn("link: held mail not released", "method", r.Method, "domain", r.Domain, "reply", r.Reply, "words", r.Words)
		}
	}
	m.mu.Lock()
	m.release = results
	m.mu.Unlock()
}

// ETRN asks the mail host at hostport to start delivering the mail it
// holds for each domain (RFC 1985), over one session, and returns one
// result per domain. go-smtp's client has no raw command, so this speaks
// SMTP over net/textproto.
func ETRN(ctx context.Context, hostport, hello string, domains []string) []ReleaseResult {
	now := time.Now().UTC()
	fail := func(err error) []ReleaseResult {
		var out []ReleaseResult
		for _, d := range domains {
			out = append(out, ReleaseResult{Domain: d, When: now, Method: MethodETRN, Reply: err.Error(),
				Words: "the ISP's mail host did not answer (" + err.Error() + "); the next link-up asks again"})
		}
		return out
	}
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetDeadline(deadline(ctx))
	tp := textproto.NewConn(replyguard.New(c))
	if code, _, err := readTP(tp); err != nil || code != 220 {
		return fail(orErr(err, code, "greeting"))
	}
	if hello == "" {
		hello = "localhost"
	}
	if code, _, err := cmdTP(tp, "EHLO "+hello); err != nil || code != 250 {
		return fail(orErr(err, code, "EHLO"))
	}
	var out []ReleaseResult
	for _, dom := range domains {
		code, msg, err := cmdTP(tp, "ETRN "+dom)
		r := ReleaseResult{Domain: dom, When: time.Now().UTC(), Method: MethodETRN, Code: code}
		if err != nil {
			r.Reply = err.Error()
			r.Words = "the ISP's mail host did not answer ETRN (" + err.Error() + "); the next link-up asks again"
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				r.Words = "the ISP's mail host did not answer ETRN for " + dom + " in time; the next link-up asks again"
			}
		} else {
			r.Reply = fmt.Sprintf("%d %s", code, msg)
			r.Words, r.OK = etrnWords(code, dom)
		}
		out = append(out, r)
	}
	cmdTP(tp, "QUIT")
	return out
}

func orErr(err error, code int, what string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected reply %d to %s", code, what)
}

// cmdTP sends a command and reads its reply.
func cmdTP(tp *textproto.Conn, line string) (int, string, error) {
	if err := tp.PrintfLine("%s", line); err != nil {
		return 0, "", err
	}
	return readTP(tp)
}

// readTP reads a reply of any code (a multi-line one joined).
func readTP(tp *textproto.Conn) (int, string, error) {
	code, msg, err := tp.ReadResponse(0)
	if _, ok := err.(*textproto.Error); ok {
		err = nil // a reply, just not a 2xx one
	}
	return code, strings.ReplaceAll(msg, "\n", " "), err
}

// readReply reads one reply from a raw connection.
func readReply(c net.Conn) (int, string, error) {
	return readTP(textproto.NewConn(nopCloser{replyguard.New(c)}))
}

type nopCloser struct{ net.Conn }

func (nopCloser) Close() error { return nil }

// maxFingerReply bounds what is read of a finger answer.
const maxFingerReply = 4096

// Finger asks the ISP's finger server to release the mail held for
// domain: the query "@domain" (RFC 1288 2.3), as some ISPs' spoolers
// take it. Any answer counts as done; its first line is kept.
func Finger(ctx context.Context, hostport, domain string) ReleaseResult {
	r := ReleaseResult{Domain: domain, When: time.Now().UTC(), Method: MethodFinger}
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		r.Reply, r.Words = err.Error(), "the ISP's finger server did not answer; the next link-up asks again"
		return r
	}
	defer c.Close()
	c.SetDeadline(deadline(ctx))
	if _, err := fmt.Fprintf(c, "@%s\r\n", domain); err != nil {
		r.Reply, r.Words = err.Error(), "the ISP's finger server did not answer; the next link-up asks again"
		return r
	}
	b, err := io.ReadAll(io.LimitReader(c, maxFingerReply))
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	r.Reply = strings.TrimSpace(first)
	if err != nil && len(b) == 0 {
		r.Reply, r.Words = err.Error(), "the ISP's finger server did not answer; the next link-up asks again"
		return r
	}
	r.OK, r.Words = true, "the ISP was asked to send the mail it holds for "+domain
	return r
}

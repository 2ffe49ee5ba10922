package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"concierge/internal/authlimit"
	"concierge/internal/connlimit"
	"concierge/internal/mailaddr"
	"concierge/smtpd/queue"
)

// Replies, with the RFC that defines each code.
var (
	// RFC 4954 6: submission needs AUTH first.
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	// RFC 4954 6: bad credentials.
	errAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	// RFC 4954 6: a login refused for now (too many failures, too many
	// checks at once).
	errAuthTryLater = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}
	// RFC 5321 4.2.2 / RFC 3463 5.7.1: not allowed to relay.
	errRelayDenied = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied: this server only accepts mail for its own domains"}
	errRouteDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied: '%', '!' and '@' routing in the local part is not accepted"}
	// RFC 3463 5.1.7 / 5.1.3: bad address syntax.
	errBadSender    = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	errBadRecipient = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	// RFC 6409 8.1: sender must be the user's own.
	errNotYourAddress = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address is not one of your addresses"}
	// RFC 3463 5.7.1: a stranger using one of our addresses as sender.
	errForgedLocalSender = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address is one of this office's own: log in on the submission port (587 or 465) to send as it"}
	// RFC 5321 6.3, RFC 3463 5.4.6: a mail loop.
	errTooManyHops = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: fmt.Sprintf("Too many hops: more than %d Received: headers, a mail loop?", queue.MaxHops)}
	// RFC 1870 6.1: too big.
	errTooBig = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds the limit"}
	// RFC 5321 4.5.3.1.10: storage trouble is temporary.
	errStorage = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary storage failure, please try again later"}
	errReceive = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error while receiving the message, please try again"}
	// RFC 3463 4.4.2: connection dropped (the client went silent).
	errIdleTimeout   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Idle timeout, closing connection"}
	errShutdownReply = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
)

func errNoSuchUser(a string) *smtp.SMTPError {
	// RFC 3463 5.1.1: bad destination mailbox address.
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + a + ">: no such user here"}
}

type backend struct {
	s    *Server
	kind ListenerKind
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	fc := frontOf(c.Conn())
	if fc == nil {
		return nil, errors.New("smtpd: connection not from our listener")
	}
	return &session{s: b.s, kind: b.kind, fc: fc, conn: c, ip: connlimit.RemoteIP(fc.raw)}, nil
}

type rcpt struct {
	addr   string
	users  []string
	remote []string
	dsn    rcptDSN // RFC 3461 NOTIFY and ORCPT (envelope.go)
}

// session is one SMTP session after HELO/EHLO.
type session struct {
	s    *Server
	kind ListenerKind
	fc   *frontConn
	conn *smtp.Conn
	ip   netip.Addr
	user string // after AUTH

	set   *Settings // snapshot for the transaction
	from  string
	null  bool
	rcpts []rcpt
	dsn   mailDSN // RFC 3461 RET and ENVID (envelope.go)
}

func (ss *session) relayNet(set *Settings) bool {
	for _, p := range set.RelayNetworks {
		if p.Contains(ss.ip) {
			return true
		}
	}
	return false
}

func (ss *session) trusted() bool { return ss.user != "" || ss.relayNet(ss.set) }

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	check := func(identity, login, pass string) error {
		if identity != "" && identity != login {
			return errAuthFailed // no proxy authorization
		}
		set := ss.s.settings.Load()
		if set.Dir == nil {
			return errAuthFailed
		}
		user, err := set.Dir.Authenticate(context.Background(), login, pass, ss.ip)
		if err != nil {
			ss.s.Log.Info("auth failed", "remote", ss.ip.String(), "login", login, "mech", mech, "err", err)
			if errors.Is(err, authlimit.ErrTryLater) {
				return errAuthTryLater
			}
			return errAuthFailed
		}
		ss.user = user
		ss.fc.user = user
		ss.s.Log.Info("auth", "remote", ss.ip.String(), "user", user, "login", login, "mech", mech)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: func(u, p string) error { return check("", u, p) }}, nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unrecognized authentication type"}
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.set = ss.s.settings.Load()
	if ss.fc.closing.Load() {
		return errShutdownReply
	}
	if ss.kind != MX && ss.user == "" && !ss.relayNet(ss.set) {
		return errAuthRequired
	}
	if opts != nil && opts.Size > ss.set.MaxMessageBytes {
		return errTooBig
	}
	ss.from, ss.null, ss.rcpts = "", from == "", nil
	ss.dsn = newMailDSN(opts)
	if from == "" {
		if ss.user != "" {
			return errNotYourAddress
		}
		return nil
	}
	a, err := mailaddr.Parse(from)
	if err != nil {
		return errBadSender
	}
	if ss.user != "" && !ss.set.Dir.CanSendAs(ss.user, a) {
		return errNotYourAddress
	}
	if ss.kind == MX && ss.user == "" && !ss.set.AllowOutsideLocalSenders && !ss.relayNet(ss.set) && ss.isOurs(a) {
		ss.s.Log.Info("sender refused: local address from outside", "remote", ss.ip.String(), "from", a.String())
		return errForgedLocalSender
	}
	ss.from = a.String()
	return nil
}

// isOurs reports whether a is an existing address at one of the office's
// domains.
func (ss *session) isOurs(a mailaddr.Address) bool {
	dir := ss.set.Dir
	if dir == nil || !dir.IsLocalDomain(a.Domain) {
		return false
	}
	_, _, ok := dir.Lookup(a)
	return ok
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	a, err := mailaddr.Parse(to)
	if err != nil {
		return errBadRecipient
	}
	r, err := ss.route(a, 0)
	if err != nil {
		ss.s.Log.Info("recipient refused", "remote", ss.ip.String(), "from", ss.from, "to", to, "reason", err.Error())
		return err
	}
	r.dsn = newRcptDSN(opts)
	ss.rcpts = append(ss.rcpts, r)
	return nil
}

// route decides what happens to one recipient.
func (ss *session) route(a mailaddr.Address, depth int) (rcpt, error) {
	dir := ss.set.Dir
	if !dir.IsLocalDomain(a.Domain) {
		if sp := ss.set.Spool; sp != nil && sp.IsRelayDomain(a.Domain) {
			// Backup MX: held in the queue until ETRN (etrn.go).
			return rcpt{addr: a.String(), remote: []string{a.String()}}, nil
		}
		if !ss.trusted() {
			return rcpt{}, errRelayDenied
		}
		return rcpt{addr: a.String(), remote: []string{a.String()}}, nil
	}
	if a.RelayTrick() {
		// u%r@local, r!u@local, "u@r"@local, u@r@local: the classic
		// ways to make a server relay. Trusted clients may relay anyway,
		// so for them the hidden address is routed as older MTAs did.
		if !ss.trusted() || depth > 0 {
			return rcpt{}, errRouteDenied
		}
		h, ok := a.Unhide()
		if !ok {
			return rcpt{}, errRouteDenied
		}
		return ss.route(h, depth+1)
	}
	users, remote, ok := dir.Lookup(a)
	if !ok {
		return rcpt{}, errNoSuchUser(a.String())
	}
	return rcpt{addr: a.String(), users: users, remote: remote}, nil
}

func (ss *session) Reset() { ss.from, ss.null, ss.rcpts = "", false, nil }

func (ss *session) Logout() error { return nil }

func (ss *session) Data(r io.Reader) error {
	set := ss.set
	if set == nil || len(ss.rcpts) == 0 {
		io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	m, err := ss.s.Store.Create()
	if err != nil {
		io.Copy(io.Discard, r)
		ss.s.Log.Error("spool", "err", err)
		return errStorage
	}
	id := m.Name()
	fmt.Fprintf(m, "Return-Path: <%s>\r\n", ss.from)
	bodyOffset := m.Size()
	m.Write([]byte(ss.received(id, set)))
	// The front end hands over the data with CRLF line endings only.
	n, err := io.Copy(&hopCounter{w: m}, r)
	if err != nil {
		m.Abort()
		io.Copy(io.Discard, r)
		if errors.Is(err, smtp.ErrDataTooLarge) {
			ss.logMessage(id, n, "refused: too large")
			return errTooBig
		}
		if errors.Is(err, errTooManyHops) {
			ss.logMessage(id, n, "refused: too many hops")
			return errTooManyHops
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ss.logMessage(id, n, "aborted: idle timeout")
			ss.fc.eof = io.EOF // this reply is the last one
			return errIdleTimeout
		}
		ss.logMessage(id, n, "aborted: "+err.Error())
		return errReceive
	}
	d := ss.delivery(set, bodyOffset)
	if err := m.Commit(context.Background(), d); err != nil {
		ss.s.Log.Error("delivery failed", "id", id, "err", err)
		ss.logMessage(id, n, "failed: "+err.Error())
		return errStorage
	}
	ss.s.Messages.Add(1)
	if set.Spool != nil {
		set.Spool.Activity(ss.ip, 1, n)
	}
	ss.logMessage(id, n, fmt.Sprintf("accepted: %d mailbox(es), %d queued", len(d.Maildirs), queued(d)))
	ss.fc.queued = id
	return nil
}

func (ss *session) logMessage(id string, size int64, result string) {
	var to []string
	for _, r := range ss.rcpts {
		to = append(to, r.addr)
	}
	ss.s.Log.Info("message", "id", id, "remote", ss.ip.String(), "user", ss.user, "from", ss.from, "to", strings.Join(to, ","), "size", size, "result", result)
}

// received builds our trace header (RFC 5321 4.4).
func (ss *session) received(id string, set *Settings) string {
	with := "ESMTP"
	if ss.fc.isTLS() {
		with += "S"
	}
	if ss.user != "" {
		with += "A"
	}
	helo := ss.conn.Hostname()
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Concierge) with %s id %s", sanitize(helo), ss.ip, set.Hostname, with, id)
	if len(ss.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", ss.rcpts[0].addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", time.Now().Format(time.RFC1123Z))
	return b.String()
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == ';' {
			return '_'
		}
		return r
	}, s)
}

// hopCounter passes message data on while counting the Received: fields
// of its header section (RFC 5321 6.3); past MaxHops it fails with
// errTooManyHops. Lines end in CRLF (the front end's canonical form).
type hopCounter struct {
	w    io.Writer
	hops int
	col  int  // bytes of the current line seen
	rcvd bool // the current line starts like "Received:" so far
	body bool // past the header section
}

func (h *hopCounter) Write(p []byte) (int, error) {
	if !h.body {
		if err := h.scan(p); err != nil {
			return 0, err
		}
	}
	return h.w.Write(p)
}

func (h *hopCounter) scan(p []byte) error {
	const field = "received:"
	for _, b := range p {
		switch {
		case b == '\n':
			h.col, h.rcvd = 0, false
			continue
		case b == '\r' && h.col == 0:
			// An empty line ends the header section (RFC 5322 2.1).
			h.body = true
			return nil
		case h.col == 0:
			h.rcvd = true
		}
		if h.rcvd && h.col < len(field) {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			h.rcvd = b == field[h.col]
			if h.rcvd && h.col == len(field)-1 {
				if h.hops++; h.hops > queue.MaxHops {
					return errTooManyHops
				}
			}
		}
		h.col++
	}
	return nil
}

// loginServer is the server side of the obsolete but widely used LOGIN
// mechanism (draft-murchison-sasl-login): "Username:", then "Password:".
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(resp) > 0 { // initial response carries the user name
			l.user = string(resp)
			l.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, errors.New("smtpd: unexpected LOGIN response")
}

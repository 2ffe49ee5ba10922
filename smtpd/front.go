package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// frontConn sits between the network and the SMTP library. It sees the
// command stream line by line, which the library gives no hook for:
//
//   - it refreshes the idle deadline on every read, so a slow upload is
//     not cut off while a silent client is (the library's ReadTimeout
//     would cover a whole DATA transfer); until the client starts a
//     transaction or logs in, the shorter start timeout applies;
//   - it limits command lines to MaxCommandLine octets;
//   - it alone decides where the data of a message ends, and hands the
//     library a canonical form of it (see data.go);
//   - it runs STARTTLS itself (RFC 3207), dropping plaintext pipelined
//     after the command and accepting only EHLO, HELO, NOOP, RSET and
//     QUIT until the client greets again (RFC 3207 4.2), and advertises
//     STARTTLS and AUTH accordingly;
//   - it answers AUTH on a plaintext connection with 538 (RFC 4954 4),
//     and on port 25 with 503 (AUTH is for submission, RFC 6409);
//   - it turns "RCPT TO:<postmaster>" without a domain, which the
//     library's parser refuses, into postmaster@ the primary domain (RFC
//     5321 4.5.1);
//   - it refuses BDAT (CHUNKING is not offered);
//   - it answers ETRN (RFC 1985) for the relay domains the box holds mail
//     for, and advertises it, when the server has a Spool (etrn.go);
//   - it words the positive replies as established MTAs do, chosen by the
//     command answered and the reply code (see editReply);
//   - on shutdown it answers the next command with 421 (RFC 5321 3.8).
//
// Command lines are handed to the library one per Read, so a reply this
// type writes itself never overtakes the library's replies to earlier
// pipelined commands. After a 354 reply the message passes through in
// large reads until its end.
type frontConn struct {
	raw       net.Conn // the TCP connection
	under     net.Conn // raw, or a *tls.Conn over it
	srv       *Server
	kind      ListenerKind
	tlsCfg    *tls.Config
	idle      time.Duration // silence allowed once a transaction started
	startIdle time.Duration // silence allowed before (0: DefaultStartTimeout)
	onClose   func()
	postmstr  string // address substituted for a bare <postmaster>

	in      []byte   // bytes read from under, not yet handed on
	inData  bool     // between a 354 reply and the end of data
	dot     dotCanon // the data's canonical form, while inData
	outBuf  []byte   // reused buffer for canonical data
	eof     error    // sticky read error
	pending []byte   // line or data prepared for the library
	verb    string   // verb of the last line handed on (its reply comes next)
	arg     string   // and its argument
	sasl    bool     // the next line answers an AUTH challenge (334)
	hello   bool     // STARTTLS done: only EHLO/HELO, NOOP, RSET, QUIT until a new greeting
	started bool     // a MAIL or AUTH succeeded: the idle timeout, not the start timeout, applies
	queued  string   // queue ID of the message just accepted (set by the session)
	user    string   // the logged-in user (set by the session), for ETRN

	greeted       bool // a HELO or EHLO was answered 250
	inTransaction bool // between MAIL and the end of the transaction

	wmu      sync.Mutex
	wbuf     []byte // reply text being collected
	saw354   atomic.Bool
	tls      atomic.Bool
	closing  atomic.Bool
	closed   atomic.Bool
	tlsState tls.ConnectionState
}

// DefaultStartTimeout is how long a client may stay silent before it
// starts a transaction (MAIL) or logs in, when Settings.StartTimeout is 0:
// a connection that does nothing useful gives its slot back soon.
const DefaultStartTimeout = 30 * time.Second

// tlsHandshakeTimeout bounds the TLS handshake after STARTTLS.
const tlsHandshakeTimeout = 30 * time.Second

// MaxCommandLine is the longest command line accepted, CRLF included
// (RFC 5321 4.5.3.1.4 allows 512; extensions add parameters, RFC 1869).
const MaxCommandLine = 1000

var errShutdown = errors.New("smtpd: shutting down")

func (c *frontConn) isTLS() bool { return c.tls.Load() }

func (c *frontConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.saw354.Swap(false) {
		c.inData, c.dot = true, dotCanon{}
	}
	if c.inData {
		if err := c.readData(); err != nil {
			return 0, err
		}
		return c.Read(p)
	}
	line, err := c.readLine()
	if err != nil {
		return 0, err
	}
	if c.sasl {
		// A response to an AUTH challenge is not a command.
		c.sasl = false
	} else if line = c.filter(line); line == nil {
		return c.Read(p)
	}
	c.pending = line
	return c.Read(p)
}

// idleTimeout is how long the client may stay silent now: the start
// timeout until it starts a transaction or logs in, then the idle timeout.
func (c *frontConn) idleTimeout() time.Duration {
	start := c.startIdle
	if start <= 0 {
		start = DefaultStartTimeout
	}
	if c.started || start > c.idle {
		return c.idle
	}
	return start
}

// fill reads more from the network, refreshing the idle deadline.
func (c *frontConn) fill() error {
	if c.eof != nil {
		return c.eof
	}
	if c.closing.Load() && !c.inData {
		return errShutdown
	}
	var buf [16 << 10]byte
	idle := c.idleTimeout()
	for {
		start := time.Now()
		if idle > 0 {
			c.raw.SetReadDeadline(start.Add(idle))
		}
		// startShutdown may have run between the check above and the
		// new deadline, which would then hide its wake-up.
		if c.closing.Load() && !c.inData {
			return errShutdown
		}
		n, err := c.under.Read(buf[:])
		c.in = append(c.in, buf[:n]...)
		if err == nil || n > 0 {
			return nil
		}
		if c.closing.Load() {
			if !c.inData {
				return errShutdown
			}
			// Woken by shutdown while a message is arriving: the
			// transaction may finish, so read on unless really idle.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(start) < idle {
				continue
			}
		}
		c.eof = err
		return err
	}
}

// readLine returns one command line with its LF, enforcing the limit.
func (c *frontConn) readLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.in, '\n'); i >= 0 {
			line := append([]byte(nil), c.in[:i+1]...)
			c.in = c.in[i+1:]
			if len(line) > MaxCommandLine {
				return nil, c.fail("500 5.5.2 Line too long, closing connection")
			}
			return line, nil
		}
		if len(c.in) > MaxCommandLine {
			return nil, c.fail("500 5.5.2 Line too long, closing connection")
		}
		if err := c.fill(); err != nil {
			if err == errShutdown {
				return nil, c.fail("421 4.3.2 Service shutting down, closing transmission channel")
			}
			if len(c.in) > 0 && errors.Is(err, io.EOF) {
				line := c.in
				c.in = nil
				return line, nil
			}
			return nil, err
		}
	}
}

// fail writes a final reply and ends the session.
func (c *frontConn) fail(reply string) error {
	c.writeRaw(reply + "\r\n")
	c.eof = io.EOF
	return io.EOF
}

// readData prepares the next piece of message data for the library, in
// canonical form; at the end of data, command filtering starts again.
func (c *frontConn) readData() error {
	for len(c.pending) == 0 && c.inData {
		if len(c.in) == 0 {
			if err := c.fill(); err != nil {
				return err
			}
		}
		out, used, end := c.dot.feed(c.outBuf[:0], c.in)
		c.outBuf, c.pending = out, out
		c.in = c.in[used:]
		c.inData = !end
	}
	return nil
}

// filter looks at one command line before the library does. It returns
// the line to hand on, or nil when it answered the line itself.
func (c *frontConn) filter(line []byte) []byte {
	verb, arg := splitVerb(line)
	c.verb, c.arg = verb, arg
	if c.hello {
		// RFC 3207 4.2: after the handshake the client knows nothing
		// learnt before it; it must greet again. The library forgets the
		// transaction at that greeting (or at RSET).
		switch verb {
		case "EHLO", "HELO", "NOOP", "RSET", "QUIT":
		default:
			c.writeRaw("503 5.5.1 Send EHLO first: the session starts over after STARTTLS\r\n")
			return nil
		}
	}
	switch verb {
	case "STARTTLS":
		if c.tlsCfg == nil || c.isTLS() {
			return line
		}
		if arg != "" {
			c.writeRaw("501 5.5.4 STARTTLS takes no parameters\r\n")
			return nil
		}
		c.writeRaw("220 2.0.0 Ready to start TLS\r\n")
		// RFC 3207 4.2 / CVE-2011-0411: anything the client pipelined
		// after STARTTLS was sent in clear text and is discarded.
		c.in = nil
		tc := tls.Server(c.raw, c.tlsCfg)
		c.raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			c.eof = io.EOF
			c.srv.log().Info("starttls failed", "remote", c.raw.RemoteAddr().String(), "err", err)
			return nil
		}
		c.raw.SetWriteDeadline(time.Time{})
		c.under = tc
		c.tlsState = tc.ConnectionState()
		c.tls.Store(true)
		c.hello = true
		return nil
	case "AUTH":
		if c.kind == MX {
			// RFC 6409: users submit on 587 and 465; port 25 takes mail
			// for the office's domains (and from relay networks).
			c.writeRaw("503 5.5.1 Authentication is not available on port 25: use the submission port (587 or 465)\r\n")
			return nil
		}
		if !c.isTLS() {
			c.writeRaw("538 5.7.11 Encryption required: use STARTTLS before AUTH\r\n")
			return nil
		}
	case "BDAT":
		c.writeRaw("502 5.5.1 BDAT is not supported; use DATA\r\n")
		return nil
	case "ETRN":
		if sp := c.srv.settings.Load().Spool; sp != nil {
			c.writeRaw(c.etrn(sp, arg))
			return nil
		}
	case "RSET", "HELO", "EHLO":
		c.inTransaction = false
	case "RCPT":
		if c.postmstr != "" && isBarePostmaster(arg) {
			rest := strings.TrimSpace(arg[strings.IndexByte(arg, '>')+1:])
			s := "RCPT TO:<" + c.postmstr + ">"
			if rest != "" {
				s += " " + rest
			}
			return []byte(s + "\r\n")
		}
	}
	return line
}

// splitVerb returns the upper-cased verb and the rest of a command line.
func splitVerb(line []byte) (string, string) {
	s := strings.TrimRight(string(line), "\r\n")
	verb, arg, _ := strings.Cut(s, " ")
	if len(verb) > 10 {
		return "", s
	}
	return strings.ToUpper(verb), strings.TrimSpace(arg)
}

func isBarePostmaster(arg string) bool {
	if len(arg) < 3 || !strings.EqualFold(arg[:3], "TO:") {
		return false
	}
	a := strings.TrimSpace(arg[3:])
	return len(a) >= len("<postmaster>") && strings.EqualFold(a[:len("<postmaster>")], "<postmaster>")
}

// Write collects the library's replies and passes each complete one
// through editReply.
func (c *frontConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, p...)
	for {
		i := bytes.IndexByte(c.wbuf, '\n')
		if i < 0 {
			break
		}
		// A reply ends with a line "ddd text"; continuation lines are
		// "ddd-text". Keep collecting until a reply is complete.
		end := -1
		for off := 0; off < len(c.wbuf); {
			j := bytes.IndexByte(c.wbuf[off:], '\n')
			if j < 0 {
				break
			}
			line := c.wbuf[off : off+j+1]
			off += j + 1
			if len(line) < 4 || line[3] != '-' {
				end = off
				break
			}
		}
		if end < 0 {
			break
		}
		reply := c.wbuf[:end]
		out := c.editReply(reply)
		if _, err := c.under.Write(out); err != nil {
			c.wbuf = c.wbuf[:0]
			return 0, err
		}
		c.wbuf = c.wbuf[end:]
	}
	return len(p), nil
}

// editReply looks at one complete reply of the library before the client
// sees it. What it does depends only on the command answered (c.verb) and
// the reply code, never on the library's wording:
//
//   - it notes what the reply changes in the front end's state (data
//     follows a 354 to DATA; a line after a 334 answers an AUTH
//     challenge; a transaction has started; the client greeted again);
//   - it words positive replies as established MTAs do (RFC 5321 4.2,
//     RFC 3463 codes);
//   - it names the server first in the replies to HELO and EHLO (RFC 5321
//     4.1.1.1) and edits the EHLO keywords to offer STARTTLS and AUTH as
//     this connection allows and not to offer CHUNKING.
func (c *frontConn) editReply(reply []byte) []byte {
	code := replyCode(reply)
	switch {
	case c.verb == "AUTH" && code == 334:
		c.sasl = true
	case c.verb == "AUTH" && code == 235:
		c.started = true
	case c.verb == "MAIL" && code == 250:
		c.started = true
		c.inTransaction = true
		return []byte("250 2.1.0 Ok\r\n")
	case c.verb == "RCPT" && code == 250:
		return []byte("250 2.1.5 Ok\r\n")
	case c.verb == "DATA" && code == 354:
		c.saw354.Store(true)
		return []byte("354 End data with <CR><LF>.<CR><LF>\r\n")
	case c.verb == "DATA" && code >= 250:
		c.inTransaction = false
		if code != 250 {
			break
		}
		id := c.queued
		c.queued = ""
		if id == "" {
			return []byte("250 2.0.0 Ok: queued\r\n")
		}
		return []byte("250 2.0.0 Ok: queued as " + id + "\r\n")
	case (c.verb == "NOOP" || c.verb == "RSET") && code == 250:
		return []byte("250 2.0.0 Ok\r\n")
	case (c.verb == "HELO" || c.verb == "EHLO") && code == 250:
		c.hello = false
		c.greeted = true
		return c.editGreeting(reply)
	}
	return reply
}

// replyCode returns the code of a reply, or 0.
func replyCode(reply []byte) int {
	if len(reply) < 3 {
		return 0
	}
	n := 0
	for _, d := range reply[:3] {
		if d < '0' || d > '9' {
			return 0
		}
		n = n*10 + int(d-'0')
	}
	return n
}

// editGreeting rewrites the 250 reply to HELO or EHLO.
func (c *frontConn) editGreeting(reply []byte) []byte {
	host := c.srv.settings.Load().Hostname
	lines := strings.Split(strings.TrimSuffix(string(reply), "\r\n"), "\r\n")
	greet, _, _ := strings.Cut(c.arg, " ") // as the library reads it
	if len(lines) == 1 {
		return []byte("250 " + host + " Hello " + greet + "\r\n")
	}
	keep := []string{host + " Hello " + greet}
	if c.srv.settings.Load().Spool != nil {
		keep = append(keep, "ETRN") // RFC 1985 section 4
	}
	for _, l := range lines[1:] {
		text := l[4:]
		up := strings.ToUpper(text)
		switch {
		case up == "CHUNKING":
			continue
		case strings.HasPrefix(up, "AUTH") && (!c.isTLS() || c.kind == MX):
			continue
		case up == "PIPELINING" && c.tlsCfg != nil && !c.isTLS():
			keep = append(keep, text, "STARTTLS")
			continue
		}
		keep = append(keep, text)
	}
	var b strings.Builder
	for i, t := range keep {
		sep := "-"
		if i == len(keep)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + t + "\r\n")
	}
	return []byte(b.String())
}

// writeRaw writes a reply of the front end's own.
func (c *frontConn) writeRaw(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.raw.SetWriteDeadline(time.Now().Add(WriteTimeout))
	c.under.Write([]byte(s))
}

// startShutdown makes the next command get 421; an idle connection is
// woken at once.
func (c *frontConn) startShutdown() {
	c.closing.Store(true)
	c.raw.SetReadDeadline(time.Now())
}

func (c *frontConn) Close() error {
	if c.closed.CompareAndSwap(false, true) && c.onClose != nil {
		c.onClose()
	}
	return c.under.Close()
}

func (c *frontConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *frontConn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *frontConn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *frontConn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *frontConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

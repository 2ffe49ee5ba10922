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
//     would cover a whole DATA transfer);
//   - it limits command lines to MaxCommandLine octets;
//   - it runs STARTTLS itself (RFC 3207), dropping plaintext pipelined
//     after the command, and advertises STARTTLS and AUTH accordingly;
//   - it answers AUTH on a plaintext connection with 538 (RFC 4954 4);
//   - it turns "RCPT TO:<postmaster>" without a domain, which the
//     library's parser refuses, into postmaster@ the primary domain (RFC
//     5321 4.5.1);
//   - it refuses BDAT (CHUNKING is not offered);
//   - on shutdown it answers the next command with 421 (RFC 5321 3.8).
//
// Command lines are handed to the library one per Read, so a reply this
// type writes itself never overtakes the library's replies to earlier
// pipelined commands. After a 354 reply the message passes through in
// large reads until CRLF.CRLF.
type frontConn struct {
	raw      net.Conn // the TCP connection
	under    net.Conn // raw, or a *tls.Conn over it
	srv      *Server
	kind     ListenerKind
	tlsCfg   *tls.Config
	idle     time.Duration
	onClose  func()
	postmstr string // address substituted for a bare <postmaster>

	in      []byte // bytes read from under, not yet handed on
	inData  bool   // between a 354 reply and the end of data
	dataPos int    // progress matching "\r\n.\r\n" (see scanData)
	eof     error  // sticky read error
	pending []byte // line prepared for the library
	verb    string // verb of the last line handed on (its reply comes next)

	wmu      sync.Mutex
	wbuf     []byte // reply text being collected
	saw354   atomic.Bool
	tls      atomic.Bool
	closing  atomic.Bool
	closed   atomic.Bool
	tlsState tls.ConnectionState
}

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
		c.inData, c.dataPos = true, 2 // data starts at the beginning of a line
	}
	if c.inData {
		return c.readData(p)
	}
	line, err := c.readLine()
	if err != nil {
		return 0, err
	}
	line = c.filter(line)
	if line == nil {
		return c.Read(p)
	}
	c.pending = line
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
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
	for {
		start := time.Now()
		if c.idle > 0 {
			c.raw.SetReadDeadline(start.Add(c.idle))
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
			if errors.As(err, &ne) && ne.Timeout() && time.Since(start) < c.idle {
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

// readData passes message data through until the line holding the single
// dot, after which command filtering starts again.
func (c *frontConn) readData(p []byte) (int, error) {
	if len(c.in) == 0 {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := len(c.in)
	if n > len(p) {
		n = len(p)
	}
	if end := c.scanData(c.in[:n]); end >= 0 {
		n = end
		c.inData = false
	}
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

// scanData looks for "\r\n.\r\n" (the end of data, RFC 5321 4.1.1.4),
// where the data is taken to begin after a CRLF. It returns the length up
// to and including the terminator, or -1. c.dataPos carries the match
// across reads: it counts matched bytes of "\r\n.\r\n".
func (c *frontConn) scanData(b []byte) int {
	const term = "\r\n.\r\n"
	for i, ch := range b {
		switch {
		case ch == term[c.dataPos]:
			c.dataPos++
		case ch == '\r':
			c.dataPos = 1
		default:
			c.dataPos = 0
		}
		if c.dataPos == len(term) {
			c.dataPos = 0
			return i + 1
		}
	}
	return -1
}

// filter looks at one command line before the library does. It returns
// the line to hand on, or nil when it answered the line itself.
func (c *frontConn) filter(line []byte) []byte {
	verb, arg := splitVerb(line)
	c.verb = verb
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
		c.raw.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.eof = io.EOF
			c.srv.log().Info("starttls failed", "remote", c.raw.RemoteAddr().String(), "err", err)
			return nil
		}
		c.raw.SetWriteDeadline(time.Time{})
		c.under = tc
		c.tlsState = tc.ConnectionState()
		c.tls.Store(true)
		// The client starts over with EHLO; the library resets then.
		return nil
	case "AUTH":
		if !c.isTLS() {
			c.writeRaw("538 5.7.11 Encryption required: use STARTTLS before AUTH\r\n")
			return nil
		}
	case "BDAT":
		c.writeRaw("502 5.5.1 BDAT is not supported; use DATA\r\n")
		return nil
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

// Write collects the library's replies: it notes a 354 (data follows) and
// edits the EHLO reply to offer STARTTLS and AUTH as this connection
// allows and not to offer CHUNKING.
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

func (c *frontConn) editReply(reply []byte) []byte {
	if bytes.HasPrefix(reply, []byte("354")) {
		c.saw354.Store(true)
		return reply
	}
	host := c.srv.settings.Load().Hostname
	if c.verb == "HELO" && bytes.HasPrefix(reply, []byte("250 ")) {
		// RFC 5321 4.1.1.1: the reply names the server first.
		_, greet, _ := strings.Cut(strings.TrimSpace(string(reply[4:])), "Hello ")
		return []byte("250 " + host + " Hello " + greet + "\r\n")
	}
	if !bytes.HasPrefix(reply, []byte("250-")) || !bytes.Contains(reply, []byte("\r\n250-PIPELINING\r\n")) {
		return reply
	}
	lines := strings.Split(strings.TrimSuffix(string(reply), "\r\n"), "\r\n")
	var keep []string
	for i, l := range lines {
		text := l[4:]
		up := strings.ToUpper(text)
		switch {
		case i == 0:
			text = host + " " + text // RFC 5321 4.1.1.1: "250-Domain greeting"
		case up == "CHUNKING":
			continue
		case strings.HasPrefix(up, "AUTH") && !c.isTLS():
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
	c.raw.SetWriteDeadline(time.Now().Add(30 * time.Second))
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

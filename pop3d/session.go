package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"concierge/internal/authlimit"
	"concierge/internal/tcpserve"
)

// state is the protocol state of a session (RFC 1939 section 3).
type state int

const (
	stateAuthorization state = iota // before a successful login
	stateTransaction                // the maildrop is locked
	stateUpdate                     // after QUIT in TRANSACTION
)

func (st state) String() string {
	return [...]string{"AUTHORIZATION", "TRANSACTION", "UPDATE"}[st]
}

// errClose ends a session after the reply already written.
var errClose = errors.New("pop3d: close session")

// command is an entry of the command table.
type command struct {
	auth, trans bool // valid in AUTHORIZATION, in TRANSACTION
	// fn handles the command; an error ends the session.
	fn func(s *session, arg string) error
}

// commands is the command table (RFC 1939 sections 4-7, RFC 2449 5,
// RFC 2595 4, RFC 5034 4; LAST from RFC 1460, which fetchmail still
// sends).
var commands map[string]command

func init() {
	commands = map[string]command{
		"USER": {auth: true, fn: (*session).cmdUser},
		"PASS": {auth: true, fn: (*session).cmdPass},
		"APOP": {auth: true, fn: (*session).cmdAPOP},
		"AUTH": {auth: true, fn: (*session).cmdAuth},
		"STLS": {auth: true, fn: (*session).cmdSTLS},
		"CAPA": {auth: true, trans: true, fn: (*session).cmdCAPA},
		"QUIT": {auth: true, trans: true, fn: (*session).cmdQUIT},
		"STAT": {trans: true, fn: (*session).cmdSTAT},
		"LIST": {trans: true, fn: (*session).cmdLIST},
		"UIDL": {trans: true, fn: (*session).cmdUIDL},
		"RETR": {trans: true, fn: (*session).cmdRETR},
		"TOP":  {trans: true, fn: (*session).cmdTOP},
		"DELE": {trans: true, fn: (*session).cmdDELE},
		"RSET": {trans: true, fn: (*session).cmdRSET},
		"NOOP": {trans: true, fn: (*session).cmdNOOP},
		"LAST": {trans: true, fn: (*session).cmdLAST},
	}
}

// session is one POP3 connection.
type session struct {
	srv  *Server
	set  *Settings
	tc   *tcpserve.Conn // as accepted
	ip   netip.Addr
	log  *slog.Logger
	conn net.Conn // the connection; a *tls.Conn after STLS
	r    *bufio.Reader
	w    *bufio.Writer
	tls  bool

	state   state
	user    string // from USER, until PASS
	login   string // the user logged in
	drop    Maildrop
	deleted []bool
	seen    []bool
	last    int // highest message number retrieved (LAST)
	errors  int
	fails   int

	closing atomic.Bool
	ended   string // why the session ended, for the log
}

func newSession(srv *Server, c *tcpserve.Conn, set *Settings) *session {
	s := &session{srv: srv, set: set, tc: c, ip: c.IP, log: c.Log}
	_, s.tls = c.Conn.(*tls.Conn)
	s.setIO(c.Conn)
	return s
}

// Buffer sizes of a session: a small writer until login, a large one to
// send messages with few system calls.
const (
	readBuffer             = 4 << 10
	writeBuffer            = 4 << 10
	transactionWriteBuffer = 64 << 10
)

func (s *session) setIO(c net.Conn) {
	s.conn = c
	s.r = bufio.NewReaderSize(c, readBuffer)
	s.w = bufio.NewWriterSize(deadlineWriter{c}, writeBuffer)
}

// deadlineWriter gives every write to the client WriteTimeout.
type deadlineWriter struct{ c net.Conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(WriteTimeout))
	return d.c.Write(p)
}

// startShutdown makes the session end at its next command; an idle one
// is woken at once. It runs on another goroutine, so it sets the deadline
// on the accepted connection, which s.conn may have replaced (STLS).
func (s *session) startShutdown() {
	s.closing.Store(true)
	s.tc.SetReadDeadline(time.Now())
}

func (s *session) ok(format string, args ...any) {
	if format == "" {
		s.w.WriteString("+OK\r\n")
		return
	}
	s.w.WriteString("+OK ")
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

func (s *session) err(format string, args ...any) {
	s.srv.stats.errorsAnswers.Add(1)
	s.w.WriteString("-ERR ")
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

func (s *session) serve() {
	start := time.Now()
	defer func() {
		if s.drop != nil {
			// Not through UPDATE: nothing is deleted (RFC 1939 6).
			s.drop.Close()
		}
		s.conn.Close()
		s.log.Info("session closed", "user", s.login, "state", s.state.String(), "tls", s.tls, "end", s.ended, "duration", time.Since(start).Round(time.Millisecond))
	}()
	s.log.Debug("session opened", "tls", s.tls)
	if s.tls {
		s.conn.SetDeadline(time.Now().Add(HandshakeTimeout))
		if err := s.conn.(*tls.Conn).Handshake(); err != nil {
			s.ended = "tls handshake: " + err.Error()
			return
		}
	}
	// No timestamp: APOP is not offered (RFC 1939 section 7).
	s.ok("%s POP3 server ready", s.set.Hostname)
	for {
		if s.r.Buffered() == 0 {
			// Replies to pipelined commands go out together
			// (RFC 2449 6.6); flush once the input is drained.
			if err := s.w.Flush(); err != nil {
				s.ended = "write: " + err.Error()
				return
			}
		}
		line, err := s.readLine()
		if err != nil {
			s.endOnReadError(err)
			return
		}
		verb, arg, perr := parseCommand(line)
		if perr != nil {
			s.srv.stats.unknown.Add(1)
			s.logLine(line)
			s.err("Malformed command")
			if !s.countError() {
				return
			}
			continue
		}
		s.logCommand(verb, arg)
		cmd, ok := commands[verb]
		if !ok {
			s.srv.stats.unknown.Add(1)
			s.err("Unknown command %s", verb)
			if !s.countError() {
				return
			}
			continue
		}
		s.srv.stats.commands[verb].Add(1)
		if s.state == stateAuthorization && !cmd.auth || s.state == stateTransaction && !cmd.trans {
			s.err("%s is not valid in the %s state", verb, s.state)
			if !s.countError() {
				return
			}
			continue
		}
		if err := cmd.fn(s, arg); err != nil {
			s.w.Flush()
			if s.ended == "" {
				s.ended = err.Error()
			}
			return
		}
	}
}

// countError counts a bad command; it reports false when the session
// ends because of too many.
func (s *session) countError() bool {
	s.errors++
	if s.errors >= MaxErrors {
		s.err("Too many errors, closing connection")
		s.w.Flush()
		s.ended = "too many errors"
		return false
	}
	return true
}

// readLine reads one command line, at most MaxLine octets, waiting at
// most the idle timeout.
func (s *session) readLine() ([]byte, error) {
	if s.r.Buffered() == 0 {
		if s.closing.Load() {
			return nil, errShutdown
		}
		s.conn.SetReadDeadline(time.Now().Add(s.srv.idleTimeout(s.set, s.state)))
		// startShutdown may have run between the check and the new
		// deadline, which would hide its wake-up.
		if s.closing.Load() {
			return nil, errShutdown
		}
	}
	line, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > MaxLine {
		return nil, errLineTooLong
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && s.closing.Load() {
			return nil, errShutdown
		}
		return nil, err
	}
	return line, nil
}

var (
	errShutdown    = errors.New("pop3d: shutting down")
	errLineTooLong = errors.New("pop3d: line too long")
)

func (s *session) endOnReadError(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errShutdown):
		s.err("%sServer shutting down, try again later", codeSysTemp)
		s.ended = "shutdown"
	case errors.Is(err, errLineTooLong):
		s.err("Line too long (limit %d octets), closing connection", MaxLine)
		s.ended = "line too long"
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 1939 3: the autologout timer; no UPDATE.
		s.err("Autologout: idle for too long")
		s.ended = "idle timeout"
	case errors.Is(err, io.EOF):
		s.ended = "client closed"
		return
	default:
		s.ended = "read: " + err.Error()
		return
	}
	s.w.Flush()
}

// idleTimeout is the session's idle timeout in state st: the login
// timeout until a login succeeded, the autologout timer after; a shorter
// one configured since the session started applies too.
func (srv *Server) idleTimeout(set *Settings, st state) time.Duration {
	now := srv.settings.Load()
	d := min(set.IdleTimeout, now.IdleTimeout)
	if st == stateAuthorization {
		d = min(d, set.LoginTimeout, now.LoginTimeout)
	}
	return d
}

// logCommand logs a command at debug level, passwords redacted.
func (s *session) logCommand(verb, arg string) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	switch verb {
	case "PASS":
		arg = "<redacted>"
	case "AUTH":
		if m, _, ok := strings.Cut(arg, " "); ok {
			arg = m + " <redacted>"
		}
	}
	s.log.Debug("command", "verb", verb, "arg", arg, "state", s.state.String())
}

func (s *session) logLine(line []byte) {
	if len(line) > 64 {
		line = line[:64]
	}
	s.log.Debug("malformed command", "line", fmt.Sprintf("%q", line))
}

// --- AUTHORIZATION ---

// plaintextRefused answers a login attempt that needs TLS first and
// reports whether it did.
func (s *session) plaintextRefused() bool {
	if s.tls || s.set.trusted(s.ip) {
		return false
	}
	how := "use port 995 (POP3 over TLS)"
	if s.set.TLSConfig != nil {
		how = "use STLS first, or port 995 (POP3 over TLS)"
	}
	s.err("%sLogin without TLS is not allowed from %s: %s", codeAuth, s.ip, how)
	return true
}

func (s *session) cmdUser(arg string) error {
	if s.plaintextRefused() {
		return nil
	}
	if arg == "" || strings.ContainsAny(arg, " \t") {
		s.err("USER takes one argument: the user name")
		return nil
	}
	s.user = arg
	// The same answer for every name (no user enumeration).
	s.ok("Send the password")
	return nil
}

func (s *session) cmdPass(arg string) error {
	if s.plaintextRefused() {
		return nil
	}
	if s.user == "" {
		s.err("Send USER first")
		return nil
	}
	user := s.user
	s.user = ""
	// RFC 1939 7: the password is the rest of the line, spaces and all.
	return s.login1(user, arg)
}

// login1 checks a login and its password and locks the maildrop of the
// user it names; it is shared by USER/PASS and AUTH.
func (s *session) login1(login, password string) error {
	user, err := s.srv.Auth.Authenticate(context.Background(), login, password, s.ip)
	if err != nil {
		s.srv.stats.loginFailures.Add(1)
		s.fails++
		s.log.Info("login failed", "login", login, "err", err)
		// The same answer for an unknown user and a wrong password.
		reply := codeAuth + "Invalid user name or password"
		if errors.Is(err, authlimit.ErrTryLater) {
			// RFC 3206 4: not the credentials' fault; a client
			// tries again later instead of asking for a password.
			reply = codeSysTemp + "Login refused for now, try again later"
		}
		if s.fails >= MaxAuthFailures {
			s.err("%s; too many failures, closing connection", reply)
			s.ended = "too many failed logins"
			return errClose
		}
		s.err("%s", reply)
		return nil
	}
	drop, err := s.srv.Mailboxes.Lock(user)
	if err != nil {
		if errors.Is(err, ErrInUse) {
			s.srv.stats.inUse.Add(1)
			s.log.Info("maildrop in use", "user", user)
			s.err("%sMaildrop is locked by another session", codeInUse)
			return nil
		}
		s.log.Error("maildrop", "user", user, "err", err)
		s.err("%sCannot open the maildrop, try again later", codeSysTemp)
		return nil
	}
	s.srv.stats.logins.Add(1)
	// Messages go out in large writes from now on; sessions that never
	// log in keep the small buffer.
	s.w.Flush()
	s.w = bufio.NewWriterSize(deadlineWriter{s.conn}, transactionWriteBuffer)
	s.drop, s.login = drop, user
	s.log = s.log.With("user", user)
	n := drop.Len()
	s.deleted = make([]bool, n)
	s.seen = make([]bool, n)
	s.state = stateTransaction
	count, octets := s.totals()
	s.log.Info("login", "tls", s.tls, "messages", count, "octets", octets)
	s.ok("Logged in, %d messages (%d octets)", count, octets)
	return nil
}

func (s *session) cmdAPOP(string) error {
	s.err("APOP is not supported: it needs the password kept in clear and relies on MD5; use USER/PASS or AUTH PLAIN over TLS")
	return nil
}

// cmdAuth runs RFC 5034 AUTH with the PLAIN mechanism (RFC 4616).
func (s *session) cmdAuth(arg string) error {
	if arg == "" {
		// RFC 1734 (obsolete, still sent by some clients): list the
		// mechanisms.
		s.ok("Mechanisms follow")
		s.w.WriteString("PLAIN\r\n.\r\n")
		return nil
	}
	if s.plaintextRefused() {
		return nil
	}
	f := fields(arg)
	if len(f) == 0 || len(f) > 2 {
		// Spaces or tabs alone are no mechanism.
		s.err("AUTH takes a mechanism and an optional initial response")
		return nil
	}
	if !strings.EqualFold(f[0], sasl.Plain) {
		s.err("Unsupported authentication mechanism %s (offered: PLAIN)", strings.ToUpper(f[0]))
		return nil
	}
	var (
		user, pass string
		decided    bool
	)
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return errors.New("pop3d: no proxy authorization")
		}
		user, pass, decided = username, password, true
		return nil
	})
	var resp []byte
	if len(f) == 2 {
		if f[1] == "=" { // RFC 5034 4: an empty initial response
			resp = []byte{}
		} else {
			b, err := base64.StdEncoding.DecodeString(f[1])
			if err != nil {
				s.err("Invalid base64 in the initial response")
				return nil
			}
			resp = b
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			break
		}
		if done {
			break
		}
		// RFC 5034 4: "+ " and the base64 challenge.
		s.w.WriteString("+ " + base64.StdEncoding.EncodeToString(challenge) + "\r\n")
		if err := s.w.Flush(); err != nil {
			return err
		}
		line, err := s.readLine()
		if err != nil {
			s.endOnReadError(err)
			return errClose
		}
		l := strings.TrimRight(string(line), "\r\n")
		if l == "*" {
			s.err("Authentication cancelled")
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			s.err("Invalid base64 in the response")
			return nil
		}
		resp = b
	}
	if !decided {
		// A malformed PLAIN message is a failed login.
		user, pass = "", ""
	}
	return s.login1(user, pass)
}

// cmdSTLS starts TLS (RFC 2595 4).
func (s *session) cmdSTLS(arg string) error {
	switch {
	case s.tls:
		s.err("Command not permitted when TLS active")
		return nil
	case s.set.TLSConfig == nil:
		s.err("STLS is not available")
		return nil
	case arg != "":
		s.err("STLS takes no argument")
		return nil
	}
	s.ok("Begin TLS negotiation")
	if err := s.w.Flush(); err != nil {
		return err
	}
	// Anything the client sent after STLS came in clear text and may
	// have been injected on the way (the STARTTLS command injection
	// class, CVE-2011-0411): end the session.
	if s.r.Buffered() > 0 {
		s.ended = "plaintext pipelined after STLS"
		return errClose
	}
	tc := tls.Server(s.conn, s.set.TLSConfig)
	tc.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.ended = "stls handshake: " + err.Error()
		return errClose
	}
	tc.SetDeadline(time.Time{})
	s.tls = true
	s.setIO(tc)
	// RFC 2595 4: the client starts over; forget a USER given before.
	s.user = ""
	return nil
}

func (s *session) cmdCAPA(string) error {
	s.ok("Capability list follows")
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.state == stateAuthorization {
		caps = append(caps, "USER", "SASL PLAIN")
		if s.set.TLSConfig != nil && !s.tls {
			caps = append(caps, "STLS")
		}
	}
	caps = append(caps, "IMPLEMENTATION Concierge")
	for _, c := range caps {
		s.w.WriteString(c + "\r\n")
	}
	s.w.WriteString(".\r\n")
	return nil
}

func (s *session) cmdQUIT(string) error {
	if s.state == stateAuthorization {
		s.ok("%s POP3 server signing off", s.set.Hostname)
		s.ended = "quit"
		return errClose
	}
	// RFC 1939 6: the UPDATE state.
	s.state = stateUpdate
	var del, seen []int
	for i := range s.deleted {
		if s.deleted[i] {
			del = append(del, i)
		} else if s.seen[i] {
			seen = append(seen, i)
		}
	}
	err := s.drop.Update(del, seen)
	s.drop.Close()
	s.drop = nil
	s.ended = "quit"
	if err != nil {
		s.srv.stats.updateFailures.Add(1)
		s.log.Error("update", "err", err)
		s.err("%sSome deleted messages not removed", codeSysTemp)
		return errClose
	}
	s.srv.stats.deleted.Add(uint64(len(del)))
	s.log.Info("update", "deleted", len(del), "seen", len(seen))
	s.ok("%s POP3 server signing off (%d messages left)", s.set.Hostname, len(s.deleted)-len(del))
	return errClose
}

// --- TRANSACTION ---

func (s *session) totals() (count int, octets int64) {
	for i := range s.deleted {
		if !s.deleted[i] {
			_, size := s.drop.Info(i)
			count++
			octets += size
		}
	}
	return count, octets
}

// message parses a message-number argument and answers the errors; it
// returns the index from 0 and whether it is usable.
func (s *session) message(arg string) (int, bool) {
	n, err := parseNumber(arg)
	if err != nil {
		s.err("Invalid message number %q", truncate(arg, 20))
		return 0, false
	}
	if n < 1 || n > len(s.deleted) {
		s.err("No such message")
		return 0, false
	}
	if s.deleted[n-1] {
		s.err("Message %d already deleted", n)
		return 0, false
	}
	return n - 1, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (s *session) cmdSTAT(arg string) error {
	count, octets := s.totals()
	s.ok("%d %d", count, octets)
	return nil
}

func (s *session) cmdLIST(arg string) error { return s.listing(arg, false) }
func (s *session) cmdUIDL(arg string) error { return s.listing(arg, true) }

// listing answers LIST and UIDL (RFC 1939 sections 5 and 7).
func (s *session) listing(arg string, uidl bool) error {
	info := func(i int) string {
		uid, size := s.drop.Info(i)
		if uidl {
			return uid
		}
		return strconv.FormatInt(size, 10)
	}
	if f := fields(arg); len(f) > 0 {
		if len(f) > 1 {
			s.err("Too many arguments")
			return nil
		}
		i, ok := s.message(f[0])
		if !ok {
			return nil
		}
		s.ok("%d %s", i+1, info(i))
		return nil
	}
	if uidl {
		s.ok("Unique-ID listing follows")
	} else {
		count, octets := s.totals()
		s.ok("%d messages (%d octets)", count, octets)
	}
	var b []byte
	for i := range s.deleted {
		if !s.deleted[i] {
			b = strconv.AppendInt(b[:0], int64(i+1), 10)
			b = append(b, ' ')
			b = append(b, info(i)...)
			b = append(b, '\r', '\n')
			s.w.Write(b)
		}
	}
	s.w.WriteString(".\r\n")
	return nil
}

func (s *session) cmdRETR(arg string) error {
	i, ok := s.message(strings.TrimSpace(arg))
	if !ok {
		return nil
	}
	return s.send(i, -1)
}

// cmdTOP sends the header and the first n body lines (RFC 1939 7).
func (s *session) cmdTOP(arg string) error {
	f := fields(arg)
	if len(f) != 2 {
		s.err("TOP takes a message number and a number of lines")
		return nil
	}
	i, ok := s.message(f[0])
	if !ok {
		return nil
	}
	n, err := parseNumber(f[1])
	if err != nil {
		s.err("Invalid number of lines %q", truncate(f[1], 20))
		return nil
	}
	return s.send(i, n)
}

func (s *session) send(i, bodyLines int) error {
	rc, err := s.drop.Open(i)
	if err != nil {
		s.log.Error("open message", "n", i+1, "err", err)
		s.err("%sCannot read message %d", codeSysTemp, i+1)
		return nil
	}
	defer rc.Close()
	if bodyLines < 0 {
		_, size := s.drop.Info(i)
		s.ok("%d octets", size)
		s.seen[i] = true
		s.last = max(s.last, i+1)
		s.srv.stats.retrieved.Add(1)
	} else {
		s.ok("Top of message follows")
	}
	if err := writeMessage(s.w, rc, bodyLines); err != nil {
		// The response is cut short: the client cannot tell where it
		// ends, so the session ends.
		s.log.Error("send message", "n", i+1, "err", err)
		return err
	}
	return nil
}

func (s *session) cmdDELE(arg string) error {
	i, ok := s.message(strings.TrimSpace(arg))
	if !ok {
		return nil
	}
	s.deleted[i] = true
	s.ok("Message %d deleted", i+1)
	return nil
}

func (s *session) cmdRSET(string) error {
	clear(s.deleted)
	s.last = 0
	count, octets := s.totals()
	s.ok("Maildrop has %d messages (%d octets)", count, octets)
	return nil
}

func (s *session) cmdNOOP(string) error {
	s.ok("")
	return nil
}

// cmdLAST answers the highest message number retrieved (RFC 1460).
func (s *session) cmdLAST(string) error {
	s.ok("%d", s.last)
	return nil
}

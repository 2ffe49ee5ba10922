package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"concierge/internal/replyguard"
	"concierge/smtpd/queue"
)

// Client timing and limits; the Transport fields of the same names
// override them.
const (
	// DialTimeout bounds connecting to one address.
	DialTimeout = 30 * time.Second
	// CommandTimeout bounds the wait for one reply (RFC 5321 4.5.3.2
	// suggests 5 minutes for MAIL, RCPT and the DATA initiation).
	CommandTimeout = 5 * time.Minute
	// DataTimeout bounds the wait for the reply after the final dot
	// (RFC 5321 4.5.3.2.6: 10 minutes).
	DataTimeout = 10 * time.Minute
	// IdleTimeout is how long a connection is kept open for the next
	// message to the same destination (connection reuse).
	IdleTimeout = 5 * time.Second
	// noTLSMemory is how long a host whose STARTTLS failed is spoken to
	// in plain text without trying TLS again.
	noTLSMemory = time.Hour
	// localAddrsTTL is how long the list of our own addresses is
	// trusted before it is read again.
	localAddrsTTL = 10 * time.Second
)

// Smarthost is the ISP's relay that takes all outbound mail.
type Smarthost struct {
	Addr string // host:port
	// User and Password, when set, log in with AUTH PLAIN (or LOGIN if
	// the relay offers only that), only over TLS.
	User, Password string
	// ImplicitTLS selects TLS from the first byte (port 465); otherwise
	// STARTTLS is required.
	ImplicitTLS bool
	// TLSConfig verifies the relay's certificate (RootCAs may add a
	// private CA); nil means the system roots.
	TLSConfig *tls.Config
}

// Transport delivers messages over SMTP, reusing connections per
// destination. It is safe for concurrent use; the caller bounds the
// number of concurrent Sends (the queue's connection limits).
type Transport struct {
	// Hostname is our fully qualified name, said in EHLO.
	Hostname string
	// Resolver finds mail hosts.
	Resolver *Resolver
	// Port of the mail hosts (default "25").
	Port string
	// Smarthost, when set, receives every message instead of the MX hosts.
	Smarthost *Smarthost
	// Timeouts; zero means the constants of the same names.
	DialTimeout, CommandTimeout, DataTimeout, IdleTimeout time.Duration
	Log                                                   *slog.Logger
	// LocalAddrs lists this box's addresses, which no MX host may have.
	// nil means the addresses of the network interfaces, and every
	// loopback and unspecified address.
	LocalAddrs func() []netip.Addr

	mu      sync.Mutex
	idle    map[string][]*conn   // destination → open connections not in use
	noTLS   map[string]time.Time // host → when its STARTTLS failed
	local   []netip.Addr         // cached LocalAddrs
	localAt time.Time
}

// conn is one SMTP session with a mail host.
type conn struct {
	c       *smtp.Client
	raw     net.Conn
	host    string // the host name (MX target or smarthost)
	addr    string // ip:port
	tls     bool   // STARTTLS or implicit TLS in use
	maxSize int64  // SIZE limit of the server, 0 if none
	timer   *time.Timer
}

func (c *conn) close() {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.c.Close()
}

func (t *Transport) log() *slog.Logger {
	if t.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Log
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// target is one host to try, with its port.
type target struct {
	host string
	port string
	pref uint16
}

// route returns the hosts to try for domain, best first. When one MX
// host is named like us it returns the better ones only, with the loop
// error that fails the recipients if none of them takes the mail.
func (t *Transport) route(ctx context.Context, domain string) ([]target, error) {
	if sh := t.Smarthost; sh != nil {
		host, port, err := net.SplitHostPort(sh.Addr)
		if err != nil {
			return nil, temporary("4.3.5", "smarthost %q: %v", sh.Addr, err)
		}
		return []target{{host: host, port: port}}, nil
	}
	mxs, err := t.Resolver.LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	port := t.Port
	if port == "" {
		port = "25"
	}
	out := make([]target, 0, len(mxs))
	for _, mx := range mxs {
		if t.isSelfName(mx.Host) {
			// RFC 5321 5.1: we are one of the MX hosts; only better
			// ones (lower preference) may be tried.
			out = slices.DeleteFunc(out, func(o target) bool { return o.pref >= mx.Pref })
			return out, loopError(domain, mx.Host)
		}
		out = append(out, target{mx.Host, port, mx.Pref})
	}
	return out, nil
}

// loopError fails recipients whose mail would come back to us.
func loopError(domain, host string) *Error {
	// RFC 3463 X.4.6: routing loop detected.
	return permanent("5.4.6", "mail for %s loops back to myself (MX host %s is this box)", domain, host)
}

func (t *Transport) isSelfName(host string) bool {
	return t.Hostname != "" && strings.EqualFold(strings.TrimSuffix(host, "."), strings.TrimSuffix(t.Hostname, "."))
}

// isSelf reports whether one of addrs is ours.
func (t *Transport) isSelf(addrs []netip.Addr) bool {
	t.mu.Lock()
	if t.localAt.IsZero() || time.Since(t.localAt) > localAddrsTTL {
		t.local, t.localAt = t.localAddrs(), time.Now()
	}
	local := t.local
	t.mu.Unlock()
	for _, a := range addrs {
		a = a.Unmap()
		if t.LocalAddrs == nil && (a.IsLoopback() || a.IsUnspecified()) || slices.Contains(local, a) {
			return true
		}
	}
	return false
}

func (t *Transport) localAddrs() []netip.Addr {
	if t.LocalAddrs != nil {
		return t.LocalAddrs()
	}
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

func (t *Transport) key(domain string) string {
	if t.Smarthost != nil {
		return "smarthost " + t.Smarthost.Addr
	}
	return strings.ToLower(domain)
}

// Send delivers one message to recipients of one domain (queue.Sender)
// and returns one result per recipient: delivered, or an *Error.
// Recipients share one transaction; those refused with 4xx, or whose host
// was unreachable, are tried on the next MX host.
func (t *Transport) Send(ctx context.Context, j *queue.Job) []queue.Result {
	out := make([]queue.Result, len(j.Rcpts))
	res := make([]error, len(j.Rcpts))
	relayed := make([]bool, len(j.Rcpts))
	t.send(ctx, j, res, relayed)
	for i := range out {
		out[i].Err = res[i]
		if res[i] == nil && relayed[i] {
			out[i].Success = "relayed"
		}
	}
	return out
}

func (t *Transport) send(ctx context.Context, j *queue.Job, res []error, relayed []bool) {
	domain := j.Domain
	m := &message{job: j, res: res, relayed: relayed}
	pending := make([]int, len(j.Rcpts))
	for i := range pending {
		pending[i] = i
	}
	key := t.key(domain)
	tried := map[string]bool{}
	// A connection left open by the previous message goes first.
	for len(pending) > 0 {
		c := t.takeIdle(key, tried)
		if c == nil {
			break
		}
		next, ok := t.transact(ctx, c, m, pending, true)
		if !ok {
			c.close() // it went stale while idle: not the host's fault
			continue
		}
		tried[c.host] = true
		pending = next
		t.release(key, c)
	}
	if len(pending) == 0 {
		return
	}
	// selfErr is set once we find ourselves among the MX hosts.
	hosts, selfErr := t.route(ctx, domain)
	if selfErr != nil && len(hosts) == 0 {
		for _, i := range pending {
			res[i] = selfErr
		}
		return
	}
	var lastErr error
	allPerm := true // every host unusable for a permanent reason
	for _, h := range hosts {
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		if tried[h.host] {
			continue
		}
		addrs, err := t.addrs(ctx, h.host)
		if err != nil {
			t.log().Debug("mail host unusable", "domain", domain, "host", h.host, "err", err)
			lastErr = err
			allPerm = allPerm && queue.IsPermanent(err)
			continue
		}
		if t.Smarthost == nil && t.isSelf(addrs) {
			// RFC 5321 5.1: this host is us; it and every host after
			// it (no better preference) are not tried.
			t.log().Warn("MX host is this box; not connecting", "domain", domain, "host", h.host, "addrs", addrs)
			selfErr = loopError(domain, h.host)
			break
		}
		allPerm = false
		for _, a := range addrs {
			c, err := t.dial(ctx, h.host, netip.AddrPortFrom(a, parsePort(h.port)).String())
			if err != nil {
				t.log().Debug("connect", "domain", domain, "host", h.host, "addr", a, "err", err)
				lastErr = err
				if queue.IsPermanent(err) {
					break // the host refuses us outright; next MX
				}
				continue
			}
			tried[h.host] = true
			next, _ := t.transact(ctx, c, m, pending, false)
			pending = next
			t.release(key, c)
			break
		}
	}
	if len(pending) > 0 {
		if lastErr == nil && selfErr != nil {
			lastErr, allPerm = selfErr, true // we are the best MX: a loop
		}
		if lastErr == nil {
			lastErr = temporary("4.4.1", "no mail host of %s could be reached", domain)
		}
		if allPerm && queue.IsPermanent(lastErr) && lastErr != selfErr {
			// RFC 5321 5.1: MX records present but none usable is an error.
			lastErr = &Error{Perm: true, Code: "5.4.4", Msg: "no usable mail host for " + domain + ": " + lastErr.(*Error).Msg}
		} else if queue.IsPermanent(lastErr) && lastErr != selfErr {
			// One host refused for good, but another failed for a
			// reason that may pass: retry later.
			e := *lastErr.(*Error)
			e.Perm = false
			e.Code = "4" + e.Code[1:]
			lastErr = &e
		}
		if ctx.Err() != nil {
			lastErr = temporary("4.3.2", "delivery interrupted: %v", ctx.Err())
		}
		for _, i := range pending {
			if res[i] == nil {
				res[i] = lastErr
			}
		}
	}
}

// message is one Send in progress: the job and its results.
type message struct {
	job     *queue.Job
	res     []error
	relayed []bool // delivered to a host without DSN
}

func parsePort(p string) uint16 {
	var n uint16
	fmt.Sscan(p, &n)
	return n
}

// addrs resolves a host (an IP address as a smarthost is used as is).
func (t *Transport) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if t.Smarthost != nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return []netip.Addr{a}, nil
		}
	}
	return t.Resolver.LookupHost(ctx, host)
}

// transact runs one mail transaction for the pending recipients and
// records each one's result in res. It returns the recipients to try on
// another host (temporary failures). ok is false when a reused connection
// turned out to be dead before the server said anything about the mail.
func (t *Transport) transact(ctx context.Context, c *conn, m *message, pending []int, reused bool) (next []int, ok bool) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	defer stop()
	j, res := m.job, m.res
	body := j.Body
	size := body.Size()
	failAll := func(err error) []int {
		next = next[:0]
		for _, i := range pending {
			res[i] = err
			if !queue.IsPermanent(err) {
				next = append(next, i)
			}
		}
		return next
	}
	if c.maxSize > 0 && size > c.maxSize {
		// RFC 1870 6: do not send what the server said it will refuse.
		failAll(&Error{Perm: true, Code: "5.3.4", Remote: c.host,
			Msg: fmt.Sprintf("message of %d bytes exceeds the server's SIZE limit of %d", size, c.maxSize)})
		return nil, true
	}
	// go-smtp's client sends SIZE, RET and ENVID only to servers that
	// offer SIZE and DSN.
	opts := &smtp.MailOptions{Size: size, Return: smtp.DSNReturn(j.Ret), EnvelopeID: j.EnvID}
	dsn, _ := c.c.Extension("DSN")
	if err := c.c.Mail(j.From, opts); err != nil {
		var se *smtp.SMTPError
		if reused && (!errors.As(err, &se) || se.Code == 421) {
			// The server ended the idle session (closed or 421):
			// not a verdict on this message.
			return pending, false
		}
		return failAll(replyError(c.host, "MAIL FROM refused", err)), c.healthy(err)
	}
	var accepted []int
	for _, i := range pending {
		if err := c.c.Rcpt(j.Rcpts[i].Addr, rcptOptions(j.Rcpts[i])); err != nil {
			e := replyError(c.host, "RCPT TO refused", err)
			res[i] = e
			if !e.Perm {
				next = append(next, i)
			}
			if !c.healthy(err) {
				// The connection is gone: the rest wait for another host.
				for _, j := range pending {
					if j > i && res[j] == nil {
						res[j] = e
						next = append(next, j)
					}
				}
				return next, true
			}
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		c.c.Reset()
		return next, true
	}
	err := func() error {
		w, err := c.c.Data()
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, io.NewSectionReader(body, 0, size)); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	}()
	if err == nil {
		log := t.log().Debug
		log("sent", "host", c.host, "addr", c.addr, "tls", c.tls, "recipients", len(accepted), "size", size)
	}
	for _, i := range accepted {
		if err == nil {
			res[i] = nil
			m.relayed[i] = !dsn
			continue
		}
		e := replyError(c.host, "message refused", err)
		res[i] = e
		if !e.Perm {
			next = append(next, i)
		}
	}
	if err != nil && c.healthy(err) {
		c.c.Reset()
	}
	return next, true
}

// rcptOptions passes a recipient's DSN parameters on (RFC 3461 5.2.1);
// go-smtp's client drops them for a server without DSN.
func rcptOptions(rc queue.Recipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	if rc.Notify != "" {
		for _, n := range strings.Split(rc.Notify, ",") {
			o.Notify = append(o.Notify, smtp.DSNNotify(strings.ToUpper(strings.TrimSpace(n))))
		}
	}
	if typ, addr, ok := strings.Cut(rc.ORcpt, ";"); ok && addr != "" {
		switch strings.ToUpper(typ) {
		case "RFC822":
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
		case "UTF-8":
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
		}
	}
	return o
}

// healthy reports whether the session can go on after err (the server
// replied); after an I/O error the connection is closed.
func (c *conn) healthy(err error) bool {
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) && se.Code != 421 {
		return true
	}
	c.raw.Close()
	return false
}

// takeIdle returns an open connection to the destination, to a host not
// in skip (tried already for this message), or nil.
func (t *Transport) takeIdle(key string, skip map[string]bool) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.idle[key]
	for i := len(l) - 1; i >= 0; i-- {
		c := l[i]
		if skip[c.host] {
			continue
		}
		t.idle[key] = append(l[:i:i], l[i+1:]...)
		c.timer.Stop()
		return c
	}
	return nil
}

// release keeps a healthy connection for the next message to the same
// destination; it is closed with QUIT after IdleTimeout unused.
func (t *Transport) release(key string, c *conn) {
	if isClosed(c.raw) {
		c.close()
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	t.idle[key] = append(t.idle[key], c)
	c.timer = time.AfterFunc(or(t.IdleTimeout, IdleTimeout), func() {
		t.mu.Lock()
		l := t.idle[key]
		found := false
		for i, e := range l {
			if e == c {
				t.idle[key] = append(l[:i:i], l[i+1:]...)
				found = true
				break
			}
		}
		t.mu.Unlock()
		if found {
			c.c.Quit()
			c.c.Close()
		}
	})
}

// CloseIdle ends every unused connection (at shutdown).
func (t *Transport) CloseIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.timer.Stop()
			c.c.Quit()
			c.c.Close()
		}
	}
}

// trackedConn remembers whether we closed it (after an I/O error or at
// shutdown), so that a dead connection is not put back in the pool.
type trackedConn struct {
	net.Conn
	mu     sync.Mutex
	closed bool
}

func (c *trackedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

func isClosed(n net.Conn) bool {
	tc, ok := n.(*trackedConn)
	if !ok {
		return false
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.closed
}

// dial connects to one address of a host and says EHLO: with STARTTLS
// when the host offers it (opportunistic, certificate not checked, RFC
// 3207 and RFC 7435), falling back to a second, plain connection when the
// TLS handshake fails. To a smarthost, TLS is required and verified, and
// the session is authenticated.
func (t *Transport) dial(ctx context.Context, host, addr string) (*conn, error) {
	sh := t.Smarthost
	wantTLS := sh != nil || !t.recentlyNoTLS(host)
	c, err := t.dialOnce(ctx, host, addr, wantTLS)
	var tlsErr *tlsFailure
	if errors.As(err, &tlsErr) && sh == nil {
		t.log().Info("STARTTLS failed; trying again without TLS", "host", host, "addr", addr, "err", tlsErr.err)
		t.mu.Lock()
		if t.noTLS == nil {
			t.noTLS = map[string]time.Time{}
		}
		t.noTLS[host] = time.Now()
		t.mu.Unlock()
		c, err = t.dialOnce(ctx, host, addr, false)
	}
	if err != nil {
		if tlsErr != nil && sh != nil {
			return nil, temporary("4.7.0", "%s: TLS with the smarthost failed: %v", host, tlsErr.err)
		}
		return nil, err
	}
	if sh != nil && sh.User != "" {
		if err := t.auth(c); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (t *Transport) recentlyNoTLS(host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.noTLS[host]
	return ok && time.Since(at) < noTLSMemory
}

type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return "tls: " + e.err.Error() }

func (t *Transport) tlsConfig(host string) *tls.Config {
	if sh := t.Smarthost; sh != nil {
		cfg := &tls.Config{}
		if sh.TLSConfig != nil {
			cfg = sh.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		cfg.MinVersion = tls.VersionTLS12
		return cfg
	}
	// Opportunistic TLS to MX hosts: encryption against passive
	// listeners; the certificate is not checked (RFC 7435).
	return &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

func (t *Transport) dialOnce(ctx context.Context, host, addr string, wantTLS bool) (*conn, error) {
	d := net.Dialer{Timeout: or(t.DialTimeout, DialTimeout)}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, temporary("4.4.1", "%s [%s]: %v", host, addr, err)
	}
	tc := &trackedConn{Conn: raw}
	var nc net.Conn = tc
	cmdTimeout := or(t.CommandTimeout, CommandTimeout)
	sh := t.Smarthost
	implicit := sh != nil && sh.ImplicitTLS
	isTLS := false
	if implicit {
		tconn := tls.Client(tc, t.tlsConfig(host))
		hctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		err := tconn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			tc.Close()
			return nil, &tlsFailure{err}
		}
		nc, isTLS = tconn, true
	} else {
		// Greeting and EHLO in plain text, then STARTTLS if offered.
		nc, isTLS, err = t.preamble(ctx, tc, host, wantTLS, cmdTimeout)
		if err != nil {
			tc.Close()
			return nil, err
		}
	}
	// The guard sits above TLS: it reads the replies, not the records.
	c := smtp.NewClient(replyguard.New(nc))
	c.CommandTimeout = cmdTimeout
	c.SubmissionTimeout = or(t.DataTimeout, DataTimeout)
	if err := c.Hello(t.Hostname); err != nil {
		c.Close()
		return nil, replyErrorHost(host, "EHLO refused", err)
	}
	cn := &conn{c: c, raw: tc, host: host, addr: addr, tls: isTLS}
	if n, ok := c.MaxMessageSize(); ok && n > 0 {
		cn.maxSize = int64(n)
	}
	return cn, nil
}

// replyErrorHost is replyError for failures that concern the host as a
// whole: they send us to the next MX rather than failing the recipient.
func replyErrorHost(host, what string, err error) *Error {
	e := replyError(host, what, err)
	if e.Perm {
		// A host that refuses the session may still be one of several
		// MX hosts; the caller decides.
		e.Code = "5.4.0"
		if strings.Contains(what, "EHLO") {
			e.Code = "5.5.0"
		}
	}
	return e
}

// preamble reads the greeting and says EHLO over a plain connection; when
// the server offers STARTTLS (and TLS is wanted) it starts TLS. The
// returned connection replays the greeting, so that the SMTP client can
// begin the session (its EHLO after TLS is the one RFC 3207 4.2 requires).
//
// go-smtp v0.25.1's client has no StartTLS method on an open session: its
// only way is NewClientStartTLS, which says "EHLO localhost" (the name
// cannot be set before it runs) and starts the handshake lazily, without
// the check for plaintext sent after the 220. So the first EHLO and
// STARTTLS are ours, on the one connection; only a failed handshake
// costs a second, plain connection (dial).
func (t *Transport) preamble(ctx context.Context, tc net.Conn, host string, wantTLS bool, timeout time.Duration) (net.Conn, bool, error) {
	tc.SetDeadline(time.Now().Add(timeout))
	defer tc.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	br := bufio.NewReader(replyguard.New(tc))
	tp := struct {
		*textproto.Reader
		*textproto.Writer
	}{textproto.NewReader(br), textproto.NewWriter(bufio.NewWriter(tc))}
	code, msg, err := tp.ReadResponse(220)
	if err != nil {
		if code >= 400 {
			// RFC 5321 3.1: a 554 greeting means no service here; like
			// any refusal of the session it sends us to the next host.
			return nil, false, &Error{Perm: code >= 500, Code: fmt.Sprintf("%d.4.0", code/100), Remote: host,
				Msg: "greeting refused", Reply: fmt.Sprintf("%d %s", code, oneLine(msg))}
		}
		return nil, false, temporary("4.4.2", "%s: reading the greeting: %v", host, err)
	}
	greeting := fmt.Sprintf("220 %s\r\n", oneLine(msg))
	if !wantTLS {
		return &replayConn{Conn: tc, r: io.MultiReader(strings.NewReader(greeting), br)}, false, nil
	}
	if err := tp.PrintfLine("EHLO %s", t.Hostname); err != nil {
		return nil, false, temporary("4.4.2", "%s: %v", host, err)
	}
	code, msg, err = tp.ReadResponse(250)
	if err != nil {
		if code >= 400 {
			return nil, false, &Error{Perm: code >= 500, Code: fmt.Sprintf("%d.5.0", code/100), Remote: host,
				Msg: "EHLO refused", Reply: fmt.Sprintf("%d %s", code, oneLine(msg))}
		}
		return nil, false, temporary("4.4.2", "%s: EHLO: %v", host, err)
	}
	offers := false
	for _, l := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			offers = true
		}
	}
	if !offers {
		if t.Smarthost != nil {
			return nil, false, temporary("4.7.0", "smarthost %s does not offer STARTTLS; not sending the password in the clear", host)
		}
		return &replayConn{Conn: tc, r: io.MultiReader(strings.NewReader(greeting), br)}, false, nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, false, temporary("4.4.2", "%s: %v", host, err)
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, &tlsFailure{fmt.Errorf("STARTTLS refused: %v", err)}
	}
	if br.Buffered() > 0 {
		// Plaintext after the 220 would be read as if it came over TLS
		// (the STARTTLS injection class of bugs).
		return nil, false, &tlsFailure{errors.New("plaintext data after the STARTTLS reply")}
	}
	tconn := tls.Client(tc, t.tlsConfig(host))
	if err := tconn.HandshakeContext(ctx); err != nil {
		return nil, false, &tlsFailure{err}
	}
	return &replayConn{Conn: tconn, r: io.MultiReader(strings.NewReader(greeting), tconn)}, true, nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// replayConn reads from r (a saved greeting, then the connection).
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// auth logs in to the smarthost: PLAIN if offered, else LOGIN. A refusal
// is temporary: the admin fixes the password, and the mail waits.
func (t *Transport) auth(c *conn) error {
	sh := t.Smarthost
	var a sasl.Client
	switch {
	case c.c.SupportsAuth("PLAIN"):
		a = sasl.NewPlainClient("", sh.User, sh.Password)
	case c.c.SupportsAuth("LOGIN"):
		a = sasl.NewLoginClient(sh.User, sh.Password)
	default:
		return &Error{Code: "4.7.0", Remote: c.host, Msg: "smarthost offers neither AUTH PLAIN nor LOGIN"}
	}
	if err := c.c.Auth(a); err != nil {
		e := replyError(c.host, "smarthost refused our login (check delivery.smarthost_user and smarthost_password)", err)
		e.Perm = false
		e.Code = "4" + e.Code[1:]
		return e
	}
	return nil
}

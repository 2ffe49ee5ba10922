package smtpd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/smtpd/queue"
)

// replyReader is a client that sends one command at a time and reads the
// whole reply.
type replyReader struct {
	c   net.Conn
	r   *bufio.Reader
	err error
}

func newReplyReader(c net.Conn) *replyReader { return &replyReader{c: c, r: bufio.NewReader(c)} }

// cmd sends line (unless it is empty) and returns the reply, its lines
// joined by "\n".
func (r *replyReader) cmd(line string) string {
	if r.err != nil {
		return ""
	}
	if line != "" {
		if _, r.err = r.c.Write([]byte(line + "\r\n")); r.err != nil {
			return ""
		}
	}
	var lines []string
	for {
		l, err := r.r.ReadString('\n')
		if err != nil {
			r.err = err
			return strings.Join(lines, "\n")
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect sends line and checks that the reply starts with prefix.
func (r *replyReader) expect(t *testing.T, line, prefix string) string {
	t.Helper()
	reply := r.cmd(line)
	if !strings.HasPrefix(reply, prefix) {
		t.Fatalf("%q: got %q (%v), want %q...", line, reply, r.err, prefix)
	}
	return reply
}

// starttls runs STARTTLS and the handshake.
func (r *replyReader) starttls(t *testing.T) {
	t.Helper()
	r.expect(t, "STARTTLS", "220 ")
	tc := tls.Client(r.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	r.c, r.r = tc, bufio.NewReader(tc)
}

// testTLSConfig is a server configuration with a fresh self-signed
// certificate.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.test"}, DNSNames: []string{"mx.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// reconfigure changes the test server's settings.
func reconfigure(s *Server, edit func(*Settings)) {
	set := *s.settings.Load()
	edit(&set)
	s.Configure(&set)
}

// open starts a session of the given kind over a pipe and reads the
// greeting.
func open(t *testing.T, s *Server, kind ListenerKind) *replyReader {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close() })
	s.ServeConn(kind, server)
	client.SetDeadline(time.Now().Add(10 * time.Second))
	r := newReplyReader(client)
	r.expect(t, "", "220 ")
	return r
}

// RFC 3207 4.2: what was said before STARTTLS is forgotten; until the
// client greets again only EHLO, HELO, NOOP, RSET and QUIT are accepted.
func TestSTARTTLSResetsSession(t *testing.T) {
	s, dir := newTestServer(t)
	reconfigure(s, func(set *Settings) { set.TLSConfig = testTLSConfig(t) })
	r := open(t, s, MX)
	r.expect(t, "EHLO c.test", "250-")
	r.expect(t, "MAIL FROM:<a@remote.test>", "250 ")
	r.expect(t, "RCPT TO:<bob@example.test>", "250 ")
	r.starttls(t)
	for _, c := range []string{"DATA", "MAIL FROM:<a@remote.test>", "RCPT TO:<bob@example.test>", "VRFY bob"} {
		r.expect(t, c, "503 5.5.1 ")
	}
	r.expect(t, "NOOP", "250 ")
	r.expect(t, "RSET", "250 ")
	r.expect(t, "EHLO c.test", "250-mx.example.test Hello c.test")
	// The transaction begun in clear is gone.
	r.expect(t, "DATA", "502 5.5.1 ")
	r.expect(t, "MAIL FROM:<a@remote.test>", "250 ")
	r.expect(t, "RCPT TO:<bob@example.test>", "250 ")
	r.expect(t, "DATA", "354 ")
	r.expect(t, "Subject: over tls\r\n\r\nhi\r\n.", "250 ")
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "bob", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages stored, want 1", len(files))
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "with ESMTPS id") {
		t.Errorf("message not marked as received over TLS:\n%s", b)
	}
}

// Port 25 offers no AUTH and refuses it; submission offers it after TLS.
func TestNoAuthOnPort25(t *testing.T) {
	s, _ := newTestServer(t)
	reconfigure(s, func(set *Settings) { set.TLSConfig = testTLSConfig(t) })
	r := open(t, s, MX)
	r.expect(t, "EHLO c.test", "250-")
	r.starttls(t)
	if ehlo := r.expect(t, "EHLO c.test", "250-"); strings.Contains(ehlo, "AUTH") {
		t.Errorf("port 25 offers AUTH:\n%s", ehlo)
	}
	r.expect(t, "AUTH PLAIN AGJvYgBzZWNyZXQtcHc=", "503 5.5.1 Authentication is not available on port 25")
	r.expect(t, "MAIL FROM:<bob@example.test>", "550 5.7.1 ") // still a stranger

	r = open(t, s, Submission)
	r.expect(t, "EHLO c.test", "250-")
	r.starttls(t)
	if ehlo := r.expect(t, "EHLO c.test", "250-"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("submission does not offer AUTH after STARTTLS:\n%s", ehlo)
	}
	r.expect(t, "AUTH PLAIN AGJvYgBzZWNyZXQtcHc=", "235 ")
	r.expect(t, "MAIL FROM:<bob@example.test>", "250 ")
}

// Unauthenticated mail on port 25 may not use one of the office's own
// addresses as sender, unless it comes from a relay network or the check
// is turned off.
func TestLocalSenderFromOutside(t *testing.T) {
	s, _ := newTestServer(t)
	// Each MAIL starts a new transaction; "250 2." counts the accepted
	// ones (the EHLO reply ends in "250 LIMITS").
	session := "EHLO c.test\r\nMAIL FROM:<bob@example.test>\r\nMAIL FROM:<postmaster@Example.Test>\r\n" +
		"MAIL FROM:<someone@remote.test>\r\nMAIL FROM:<nobody@example.test>\r\nMAIL FROM:<>\r\n"
	out := dialog(t, s, session)
	if n := strings.Count(out, "550 5.7.1 Sender address is one of this office's own"); n != 2 {
		t.Errorf("local senders from outside: %d refused, want 2:\n%s", n, out)
	}
	if n := strings.Count(out, "250 2."); n != 3 {
		t.Errorf("other senders: %d accepted, want 3:\n%s", n, out)
	}

	reconfigure(s, func(set *Settings) { set.RelayNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	if out := dialog(t, s, session); strings.Count(out, "250 2.") != 5 {
		t.Errorf("from a relay network:\n%s", out)
	}
	reconfigure(s, func(set *Settings) { set.RelayNetworks, set.AllowOutsideLocalSenders = nil, true })
	if out := dialog(t, s, session); strings.Count(out, "250 2.") != 5 {
		t.Errorf("with the check turned off:\n%s", out)
	}
}

// A message that has passed more than MaxHops servers is refused with
// 554 5.4.6 (RFC 5321 6.3); Received: lines in the body do not count.
func TestHopLimit(t *testing.T) {
	s, dir := newTestServer(t)
	msg := func(hops int, body string) string {
		var b strings.Builder
		for i := range hops {
			fmt.Fprintf(&b, "Received: from h%d.remote.test by h%d.remote.test;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n", i, i+1)
		}
		return b.String() + "Subject: hops\r\n\r\n" + body + "\r\n.\r\n"
	}
	tx := "MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
	out := dialog(t, s, "EHLO c.test\r\n"+
		tx+msg(queue.MaxHops, strings.Repeat("Received: in the body\r\n", 100))+
		tx+msg(queue.MaxHops+1, "")+
		tx+msg(120, "")+
		"QUIT\r\n")
	if n := strings.Count(strings.ToLower(out), "250 2.0.0 ok: queued"); n != 1 {
		t.Errorf("%d messages accepted, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "554 5.4.6 Too many hops"); n != 2 {
		t.Errorf("%d messages refused as looping, want 2:\n%s", n, out)
	}
	if !strings.HasSuffix(out, "221 2.0.0 Bye\r\n") {
		t.Errorf("session did not go on after the refusals:\n%s", out)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "mail", "bob", "new", "*")); len(files) != 1 {
		t.Errorf("%d messages stored, want 1", len(files))
	}
}

// Before a transaction starts, a silent client is dropped after the short
// start timeout; once it runs, after the idle timeout.
func TestStartTimeout(t *testing.T) {
	s, _ := newTestServer(t)
	const start, idle = 100 * time.Millisecond, 1500 * time.Millisecond
	reconfigure(s, func(set *Settings) { set.StartTimeout, set.IdleTimeout = start, idle })

	r := open(t, s, MX)
	t0 := time.Now()
	r.expect(t, "", "421 4.4.2 ")
	if d := time.Since(t0); d > idle/2 {
		t.Errorf("silent client before the greeting dropped after %v, want about %v", d, start)
	}

	r = open(t, s, MX)
	r.expect(t, "EHLO c.test", "250-")
	t0 = time.Now()
	r.expect(t, "", "421 4.4.2 ")
	if d := time.Since(t0); d > idle/2 {
		t.Errorf("silent client after EHLO dropped after %v, want about %v", d, start)
	}

	r = open(t, s, MX)
	r.expect(t, "EHLO c.test", "250-")
	r.expect(t, "MAIL FROM:<a@remote.test>", "250 ")
	t0 = time.Now()
	r.expect(t, "", "421 4.4.2 ")
	if d := time.Since(t0); d < idle*2/3 {
		t.Errorf("client in a transaction dropped after %v, want about %v", d, idle)
	}
}

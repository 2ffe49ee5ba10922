package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// logSink collects a server's log for tests that look for a line.
type logSink = testnet.SafeBuffer

// panicky is an Authenticator with a bug: it panics for user "boom".
type panicky struct{ users }

func (p panicky) Authenticate(ctx context.Context, login, pass string, ip netip.Addr) (string, error) {
	if login == "boom" {
		var m map[string]bool
		m[pass] = true // a nil map write, as a real bug would
	}
	return p.users.Authenticate(ctx, login, pass, ip)
}

// dialTLS opens an implicit-TLS session and reads the greeting.
func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	expect(t, c.line(), "+OK ")
	return c
}

// Issue 9 item 1: "AUTH" and only blanks over TLS indexed an empty word
// list, and the panic ended the whole process.
func TestAuthWithBlankArgument(t *testing.T) {
	cert := selfSigned(t, "mail.example.test")
	ts := newTestServer(t, &Settings{TLSConfig: cert})
	l, err := tls.Listen("tcp", "127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.Serve(l)
	for _, line := range []string{"AUTH \t \r\n", "AUTH  \r\n", "AUTH \t\r\n"} {
		// Port 995.
		c := dialTLS(t, l.Addr().String())
		c.send(line)
		expect(t, c.line(), "-ERR AUTH takes a mechanism")
		expect(t, c.cmd("CAPA"), "+OK")
		c.multi()
		// Port 110 after STLS.
		p := ts.dial(t)
		expect(t, p.cmd("STLS"), "+OK")
		tc := tls.Client(p.conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		p.conn, p.r = tc, bufio.NewReader(tc)
		p.send(line)
		expect(t, p.line(), "-ERR AUTH takes a mechanism")
		p.login("alice", "secret 1")
		expect(t, p.cmd("QUIT"), "+OK")
	}
	if n := ts.srv.Counters()["panics"]; n != 0 {
		t.Errorf("%d panics", n)
	}
}

// Issue 9 item 1: a bug in one session ends that session only; it is
// logged with its stack, its slot and maildrop are released, and the
// server goes on serving the others.
func TestPanicEndsOnlyThatSession(t *testing.T) {
	sink := &logSink{}
	srv := NewServer(panicky{users{"alice": "secret 1", "bob": "pw"}}, MaildirBoxes{Root: t.TempDir()},
		&Settings{TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxConnsPerIP: 2},
		slog.New(slog.NewTextHandler(sink, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ts := &testServer{srv: srv, addr: l.Addr().String()}
	put(t, srv.Mailboxes.(MaildirBoxes).Root, "alice", "1.a.box", msg1, 0)

	alice := ts.dial(t)
	alice.login("alice", "secret 1")
	// Twice, to show the slot of the first is free again (two per IP).
	for range 2 {
		c := ts.dial(t)
		expect(t, c.cmd("USER boom"), "+OK")
		c.send("PASS x\r\n")
		if ok, rest := c.closed(); !ok || rest != "" {
			t.Fatalf("after the panic: closed=%v, rest %q", ok, rest)
		}
		if !testnet.WaitFor(10*time.Second, func() bool { return srv.Sessions() == 1 }) {
			t.Fatalf("%d sessions, want 1", srv.Sessions())
		}
	}
	log := sink.String()
	for _, want := range []string{`level=ERROR msg="panic: connection closed"`, "assignment to entry in nil map", "panicky.Authenticate", "port=pop3", "session=", "remote=127.0.0.1:"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if n := srv.Counters()["panics"]; n != 2 {
		t.Errorf("panics = %d, want 2", n)
	}
	// The other session and new ones go on.
	expect(t, alice.cmd("STAT"), fmt.Sprintf("+OK 1 %d", len(msg1)))
	expect(t, alice.cmd("QUIT"), "+OK")
	c := ts.dial(t)
	c.login("alice", "secret 1")
	expect(t, c.cmd("QUIT"), "+OK")
}

// Issue 9 item 8: until a login succeeds a session has LoginTimeout;
// after it, the autologout timer (IdleTimeout).
func TestLoginTimeout(t *testing.T) {
	const login, idle = 50 * time.Millisecond, 800 * time.Millisecond
	ts := newTestServer(t, &Settings{TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		LoginTimeout: login, IdleTimeout: idle})
	put(t, ts.root, "bob", "1.a.box", msg2, 0)
	c := ts.dial(t)
	start := time.Now()
	expect(t, c.line(), "-ERR Autologout")
	if d := time.Since(start); d >= idle {
		t.Errorf("no login: closed after %v, want about %v", d, login)
	}
	c = ts.dial(t)
	expect(t, c.cmd("USER bob"), "+OK")
	start = time.Now()
	expect(t, c.line(), "-ERR Autologout")
	if d := time.Since(start); d >= idle {
		t.Errorf("USER only: closed after %v, want about %v", d, login)
	}
	c = ts.dial(t)
	c.login("bob", "pw")
	start = time.Now()
	expect(t, c.line(), "-ERR Autologout")
	if d := time.Since(start); d < idle-idle/4 {
		t.Errorf("logged in: closed after %v, want %v", d, idle)
	}
}

// Issue 9 item 8: connections are counted per /24 as well as per
// address, so that one network cannot take every slot.
func TestConnectionsPerNetwork(t *testing.T) {
	ts := newTestServer(t, &Settings{MaxConnsPerNet: 3})
	from := func(local string) (net.Conn, string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return c, l
	}
	for i := 1; i <= 3; i++ {
		if _, l := from(fmt.Sprintf("127.1.1.%d", i)); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("connection %d of 127.1.1.0/24: %q", i, l)
		}
	}
	if _, l := from("127.1.1.4"); !strings.HasPrefix(l, "-ERR [SYS/TEMP] Too many connections") {
		t.Errorf("fourth of 127.1.1.0/24: %q", l)
	}
	if _, l := from("127.1.2.1"); !strings.HasPrefix(l, "+OK") {
		t.Errorf("another /24: %q", l)
	}
	if n := ts.srv.Counters()["refused"]; n != 1 {
		t.Errorf("refused = %d", n)
	}
}

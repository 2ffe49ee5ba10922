package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	msg1 = "Subject: one\r\nFrom: a@example.test\r\n\r\nfirst line\r\n.dotted line\r\n..two dots\r\nlast\r\n"
	msg2 = "Subject: two\r\n\r\nbody\r\n"
	msg3 = "Subject: three\nX: bare LF\n\nline 1\nline 2\n.dot\nline 4"
)

func threeMessages(t *testing.T, ts *testServer) {
	put(t, ts.root, "alice", "1700000001.M1P1Q1.box", msg1, 3*time.Minute)
	put(t, ts.root, "alice", "1700000002.M1P1Q2.box", msg2, 2*time.Minute)
	put(t, ts.root, "alice", "1700000003.M1P1Q3.box", msg3, time.Minute)
}

func TestTransaction(t *testing.T) {
	ts := newTestServer(t, nil)
	threeMessages(t, ts)
	crlf3 := strings.ReplaceAll(msg3, "\n", "\r\n") + "\r\n"
	c := ts.dial(t)
	expect(t, c.cmd("STAT"), "-ERR STAT is not valid in the AUTHORIZATION state")
	expect(t, c.cmd("user alice"), "+OK")
	expect(t, c.cmd("pass secret 1"), fmt.Sprintf("+OK Logged in, 3 messages (%d octets)", len(msg1)+len(msg2)+len(crlf3)))
	expect(t, c.cmd("STAT"), fmt.Sprintf("+OK 3 %d", len(msg1)+len(msg2)+len(crlf3)))
	expect(t, c.cmd("LIST"), "+OK 3 messages")
	if got, want := c.multi(), fmt.Sprintf("1 %d\r\n2 %d\r\n3 %d\r\n", len(msg1), len(msg2), len(crlf3)); got != want {
		t.Fatalf("LIST = %q, want %q", got, want)
	}
	expect(t, c.cmd("LIST 2"), fmt.Sprintf("+OK 2 %d", len(msg2)))
	expect(t, c.cmd("UIDL"), "+OK")
	if got, want := c.multi(), "1 1700000001.M1P1Q1.box\r\n2 1700000002.M1P1Q2.box\r\n3 1700000003.M1P1Q3.box\r\n"; got != want {
		t.Fatalf("UIDL = %q, want %q", got, want)
	}
	expect(t, c.cmd("UIDL 3"), "+OK 3 1700000003.M1P1Q3.box")
	expect(t, c.cmd("RETR 1"), fmt.Sprintf("+OK %d octets", len(msg1)))
	if got := c.multi(); got != msg1 {
		t.Fatalf("RETR 1 = %q", got)
	}
	expect(t, c.cmd("RETR 3"), fmt.Sprintf("+OK %d octets", len(crlf3)))
	if got := c.multi(); got != crlf3 {
		t.Fatalf("RETR 3 = %q, want %q", got, crlf3)
	}
	expect(t, c.cmd("TOP 1 0"), "+OK")
	if got := c.multi(); got != "Subject: one\r\nFrom: a@example.test\r\n\r\n" {
		t.Fatalf("TOP 1 0 = %q", got)
	}
	expect(t, c.cmd("TOP 1 2"), "+OK")
	if got := c.multi(); got != "Subject: one\r\nFrom: a@example.test\r\n\r\nfirst line\r\n.dotted line\r\n" {
		t.Fatalf("TOP 1 2 = %q", got)
	}
	expect(t, c.cmd("TOP 3 100"), "+OK")
	if got := c.multi(); got != crlf3 {
		t.Fatalf("TOP 3 100 = %q", got)
	}
	expect(t, c.cmd("LAST"), "+OK 3")
	for _, bad := range []string{"RETR 0", "RETR 4", "LIST 9", "UIDL 4", "TOP 4 1", "DELE 4"} {
		expect(t, c.cmd("%s", bad), "-ERR No such message")
	}
	for _, bad := range []string{"RETR x", "RETR -1", "RETR", "DELE 1x", "TOP 1 x", "TOP 1"} {
		expect(t, c.cmd("%s", bad), "-ERR")
	}
	expect(t, c.cmd("DELE 2"), "+OK Message 2 deleted")
	expect(t, c.cmd("DELE 2"), "-ERR Message 2 already deleted")
	expect(t, c.cmd("RETR 2"), "-ERR Message 2 already deleted")
	expect(t, c.cmd("STAT"), fmt.Sprintf("+OK 2 %d", len(msg1)+len(crlf3)))
	expect(t, c.cmd("LIST"), "+OK 2 messages")
	if got := c.multi(); !strings.HasPrefix(got, "1 ") || strings.Contains(got, "\r\n2 ") {
		t.Fatalf("LIST after DELE = %q", got)
	}
	expect(t, c.cmd("RSET"), "+OK Maildrop has 3 messages")
	expect(t, c.cmd("LAST"), "+OK 0")
	expect(t, c.cmd("DELE 2"), "+OK")
	expect(t, c.cmd("NOOP"), "+OK")
	expect(t, c.cmd("USER bob"), "-ERR USER is not valid in the TRANSACTION state")
	expect(t, c.cmd("QUIT"), "+OK mail.example.test POP3 server signing off (2 messages left)")
	if ok, rest := c.closed(); !ok || rest != "" {
		t.Fatalf("not closed after QUIT: %v %q", ok, rest)
	}
	// Message 2 is gone, 1 and 3 were retrieved and are seen.
	want := []string{"cur/1700000001.M1P1Q1.box:2,S", "cur/1700000003.M1P1Q3.box:2,S"}
	if got := files(ts.root, "alice"); !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	// The status page's counters saw it.
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cnt := ts.srv.Counters()
	for k, want := range map[string]uint64{"logins": 1, "retrieved": 2, "deleted": 1, "cmd_RETR": 6 + 2, "cmd_DELE": 5, "connections": 1} {
		if cnt[k] != want {
			t.Errorf("counter %s = %d, want %d (all: %v)", k, cnt[k], want, cnt)
		}
	}
	// UIDs are the same in the next session.
	c = ts.dial(t)
	c.login("alice", "secret 1")
	expect(t, c.cmd("UIDL"), "+OK")
	if got, want := c.multi(), "1 1700000001.M1P1Q1.box\r\n2 1700000003.M1P1Q3.box\r\n"; got != want {
		t.Fatalf("UIDL = %q, want %q", got, want)
	}
}

func TestCAPAAndAPOP(t *testing.T) {
	ts := newTestServer(t, &Settings{TLSConfig: selfSigned(t, "mail.example.test")})
	c := ts.dial(t)
	expect(t, c.cmd("CAPA"), "+OK")
	caps := strings.Split(strings.TrimSpace(c.multi()), "\r\n")
	for _, want := range []string{"TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL PLAIN", "STLS", "IMPLEMENTATION Concierge"} {
		if !slices.Contains(caps, want) {
			t.Errorf("CAPA lacks %q: %q", want, caps)
		}
	}
	expect(t, c.cmd("APOP alice 0123456789abcdef0123456789abcdef"), "-ERR APOP is not supported")
	expect(t, c.cmd("AUTH"), "+OK")
	if got := c.multi(); got != "PLAIN\r\n" {
		t.Fatalf("AUTH list = %q", got)
	}
	expect(t, c.cmd("XYZ"), "-ERR Unknown command XYZ")
	expect(t, c.cmd("XYZZY"), "-ERR Malformed command")
	expect(t, c.cmd("QUIT"), "+OK")
}

func TestGreetingHasNoTimestamp(t *testing.T) {
	ts := newTestServer(t, nil)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(g, "+OK mail.example.test ") || strings.ContainsAny(g, "<>") {
		t.Fatalf("greeting %q", g)
	}
}

func TestAuthPlain(t *testing.T) {
	ts := newTestServer(t, nil)
	put(t, ts.root, "alice", "1.a.box", msg2, 0)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	// Initial response.
	c := ts.dial(t)
	expect(t, c.cmd("AUTH PLAIN %s", b64("\x00alice\x00secret 1")), "+OK Logged in, 1 messages")
	expect(t, c.cmd("QUIT"), "+OK")
	// Challenge and response; identity equal to the user is fine.
	c = ts.dial(t)
	expect(t, c.cmd("AUTH plain"), "+ ")
	expect(t, c.cmd("%s", b64("alice\x00alice\x00secret 1")), "+OK Logged in")
	expect(t, c.cmd("QUIT"), "+OK")
	// Cancel, bad base64, wrong password, another identity, unknown mechanism.
	c = ts.dial(t)
	expect(t, c.cmd("AUTH PLAIN"), "+ ")
	expect(t, c.cmd("*"), "-ERR Authentication cancelled")
	expect(t, c.cmd("AUTH PLAIN !!!"), "-ERR Invalid base64")
	expect(t, c.cmd("AUTH LOGIN"), "-ERR Unsupported authentication mechanism")
	expect(t, c.cmd("AUTH PLAIN %s", b64("\x00alice\x00wrong")), "-ERR [AUTH] Invalid user name or password")
	expect(t, c.cmd("AUTH PLAIN %s", b64("bob\x00alice\x00secret 1")), "-ERR [AUTH] Invalid user name or password")
	// The third failure (an empty initial response, RFC 5034 4) ends
	// the session.
	expect(t, c.cmd("AUTH PLAIN ="), "-ERR [AUTH] Invalid user name or password; too many failures")
	if ok, _ := c.closed(); !ok {
		t.Fatal("session not closed after three failed logins")
	}
}

func TestSameErrorForUnknownUserAndWrongPassword(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	expect(t, c.cmd("USER nobody"), "+OK")
	unknown := c.cmd("PASS x")
	expect(t, c.cmd("USER alice"), "+OK")
	wrong := c.cmd("PASS x")
	if unknown != wrong || !strings.HasPrefix(wrong, "-ERR [AUTH] ") {
		t.Fatalf("unknown user: %q, wrong password: %q", unknown, wrong)
	}
}

// A login the Authenticator refuses for now is answered [SYS/TEMP]
// (RFC 3206 4), not [AUTH], and counts toward the failures that end the
// session.
func TestLoginRefusedForNow(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	expect(t, c.cmd("USER busy"), "+OK")
	expect(t, c.cmd("PASS pw"), "-ERR [SYS/TEMP] Login refused for now, try again later")
	expect(t, c.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00busy\x00pw"))), "-ERR [SYS/TEMP] Login refused for now")
	expect(t, c.cmd("USER busy"), "+OK")
	expect(t, c.cmd("PASS pw"), "-ERR [SYS/TEMP] Login refused for now, try again later; too many failures")
	if ok, _ := c.closed(); !ok {
		t.Fatal("session not closed after three refused logins")
	}
}

// Issue 9 item 13: the session opens the maildrop of the user the
// Authenticator names, whatever the login was (here an address).
func TestLoginWithAddress(t *testing.T) {
	ts := newTestServer(t, nil)
	put(t, ts.root, "alice", "1.a.box", msg2, 0)
	c := ts.dial(t)
	c.login("alice@example.test", "secret 1")
	expect(t, c.cmd("STAT"), "+OK 1 ")
	expect(t, c.cmd("QUIT"), "+OK")
	c = ts.dial(t)
	expect(t, c.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice@example.test\x00secret 1"))), "+OK Logged in, 1 messages")
	expect(t, c.cmd("QUIT"), "+OK")
}

func TestPlaintextLoginRefusedUnlessTrusted(t *testing.T) {
	ts := newTestServer(t, &Settings{TLSConfig: selfSigned(t, "mail.example.test")})
	put(t, ts.root, "alice", "1.a.box", msg2, 0)
	c := ts.dial(t)
	expect(t, c.cmd("USER alice"), "-ERR [AUTH] Login without TLS is not allowed from 127.0.0.1: use STLS first")
	expect(t, c.cmd("PASS secret 1"), "-ERR [AUTH] Login without TLS")
	expect(t, c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldCAx"), "-ERR [AUTH] Login without TLS")
	// After STLS the same login works.
	expect(t, c.cmd("STLS"), "+OK Begin TLS negotiation")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	expect(t, c.cmd("CAPA"), "+OK")
	if caps := c.multi(); strings.Contains(caps, "STLS") {
		t.Fatalf("STLS offered again after TLS: %q", caps)
	}
	expect(t, c.cmd("STLS"), "-ERR Command not permitted when TLS active")
	c.login("alice", "secret 1")
	expect(t, c.cmd("RETR 1"), "+OK")
	if got := c.multi(); got != msg2 {
		t.Fatalf("RETR over TLS = %q", got)
	}
	expect(t, c.cmd("QUIT"), "+OK")
}

func TestImplicitTLS(t *testing.T) {
	ts := newTestServer(t, &Settings{})
	put(t, ts.root, "alice", "1.a.box", msg2, 0)
	l, err := tls.Listen("tcp", "127.0.0.1:0", selfSigned(t, "mail.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.Serve(l)
	tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	defer tc.Close()
	expect(t, c.line(), "+OK")
	expect(t, c.cmd("CAPA"), "+OK")
	if caps := c.multi(); strings.Contains(caps, "STLS") {
		t.Fatalf("STLS offered on implicit TLS: %q", caps)
	}
	c.login("alice", "secret 1")
	expect(t, c.cmd("STAT"), fmt.Sprintf("+OK 1 %d", len(msg2)))
	expect(t, c.cmd("QUIT"), "+OK")
}

// Plaintext pipelined after STLS may have been injected: the session ends.
func TestSTLSInjection(t *testing.T) {
	ts := newTestServer(t, &Settings{TLSConfig: selfSigned(t, "mail.example.test")})
	c := ts.dial(t)
	c.send("STLS\r\nUSER alice\r\n")
	expect(t, c.line(), "+OK Begin TLS")
	if ok, rest := c.closed(); !ok || rest != "" {
		t.Fatalf("connection not dropped after injected plaintext: closed=%v rest=%q", ok, rest)
	}
}

func TestPipelining(t *testing.T) {
	ts := newTestServer(t, nil)
	threeMessages(t, ts)
	c := ts.dial(t)
	// mpop sends USER and PASS together, then every RETR at once.
	c.send("USER alice\r\nPASS secret 1\r\nRETR 1\r\nRETR 2\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n")
	expect(t, c.line(), "+OK")
	expect(t, c.line(), "+OK Logged in")
	expect(t, c.line(), "+OK")
	if got := c.multi(); got != msg1 {
		t.Fatalf("RETR 1 = %q", got)
	}
	expect(t, c.line(), "+OK")
	if got := c.multi(); got != msg2 {
		t.Fatalf("RETR 2 = %q", got)
	}
	expect(t, c.line(), "+OK Message 1 deleted")
	expect(t, c.line(), "+OK Message 2 deleted")
	expect(t, c.line(), "+OK")
	if got := files(ts.root, "alice"); len(got) != 1 {
		t.Fatalf("files after QUIT: %v", got)
	}
}

func TestInUseAndDroppedConnectionDeletesNothing(t *testing.T) {
	ts := newTestServer(t, nil)
	threeMessages(t, ts)
	before := files(ts.root, "alice")
	c1 := ts.dial(t)
	c1.login("alice", "secret 1")
	expect(t, c1.cmd("DELE 1"), "+OK")
	expect(t, c1.cmd("RETR 2"), "+OK")
	c1.multi()
	c2 := ts.dial(t)
	expect(t, c2.cmd("USER alice"), "+OK")
	expect(t, c2.cmd("PASS secret 1"), "-ERR [IN-USE] ")
	// The first client goes away without QUIT.
	c1.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		expect(t, c2.cmd("USER alice"), "+OK")
		r := c2.cmd("PASS secret 1")
		if strings.HasPrefix(r, "+OK") {
			break
		}
		expect(t, r, "-ERR [IN-USE]")
		if time.Now().After(deadline) {
			t.Fatal("lock not released after the client went away")
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect(t, c2.cmd("STAT"), "+OK 3 ")
	if got := files(ts.root, "alice"); !slices.Equal(got, before) {
		t.Fatalf("files changed: %v, want %v", got, before)
	}
}

func TestLimits(t *testing.T) {
	ts := newTestServer(t, &Settings{
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxConnsPerIP:   2,
		IdleTimeout:     300 * time.Millisecond,
	})
	t.Run("line too long", func(t *testing.T) {
		c := ts.dial(t)
		c.send("USER " + strings.Repeat("a", 2000) + "\r\n")
		expect(t, c.line(), "-ERR Line too long")
		if ok, _ := c.closed(); !ok {
			t.Fatal("not closed")
		}
	})
	t.Run("too many errors", func(t *testing.T) {
		c := ts.dial(t)
		for range MaxErrors - 1 {
			expect(t, c.cmd("BOGUS"), "-ERR")
		}
		expect(t, c.cmd("BOGUS"), "-ERR")
		expect(t, c.line(), "-ERR Too many errors")
		if ok, _ := c.closed(); !ok {
			t.Fatal("not closed")
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		put(t, ts.root, "bob", "1.a.box", msg2, 0)
		c := ts.dial(t)
		c.login("bob", "pw")
		expect(t, c.cmd("DELE 1"), "+OK")
		start := time.Now()
		expect(t, c.line(), "-ERR Autologout")
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("autologout after %v", d)
		}
		if got := files(ts.root, "bob"); len(got) != 1 {
			t.Fatalf("autologout deleted mail: %v", got)
		}
	})
	t.Run("connections per IP", func(t *testing.T) {
		for deadline := time.Now().Add(5 * time.Second); ts.srv.Sessions() > 0; {
			if time.Now().After(deadline) {
				t.Fatal("sessions of the earlier subtests did not end")
			}
			time.Sleep(10 * time.Millisecond)
		}
		a, b := ts.dial(t), ts.dial(t)
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		expect(t, l, "-ERR [SYS/TEMP] Too many connections")
		a.conn.Close()
		b.conn.Close()
	})
}

func TestShutdown(t *testing.T) {
	ts := newTestServer(t, nil)
	threeMessages(t, ts)
	c := ts.dial(t)
	c.login("alice", "secret 1")
	expect(t, c.cmd("DELE 1"), "+OK")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, c.line(), "-ERR [SYS/TEMP] Server shutting down")
	if got := files(ts.root, "alice"); len(got) != 3 {
		t.Fatalf("shutdown deleted mail: %v", got)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

// Many sessions of different users at once: each sees its own maildrop.
func TestConcurrentUsers(t *testing.T) {
	ts := newTestServer(t, nil)
	put(t, ts.root, "alice", "1.a.box", msg1, 0)
	put(t, ts.root, "bob", "1.b.box", msg2, 0)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, pass, want := "alice", "secret 1", msg1
			if i%2 == 1 {
				user, pass, want = "bob", "pw", msg2
			}
			for {
				c := ts.dial(t)
				expect(t, c.cmd("USER %s", user), "+OK")
				r := c.cmd("PASS %s", pass)
				if strings.HasPrefix(r, "-ERR [IN-USE]") {
					c.conn.Close()
					time.Sleep(5 * time.Millisecond)
					continue
				}
				expect(t, r, "+OK")
				expect(t, c.cmd("RETR 1"), "+OK")
				if got := c.multi(); got != want {
					t.Errorf("%s got %q", user, got)
				}
				expect(t, c.cmd("QUIT"), "+OK")
				return
			}
		}()
	}
	wg.Wait()
}

// Mail that arrives during a session appears in the next one (RFC 1939
// numbers messages for the length of a session).
func TestNewMailAppearsInNextSession(t *testing.T) {
	ts := newTestServer(t, nil)
	put(t, ts.root, "alice", "1.a.box", msg1, time.Minute)
	c := ts.dial(t)
	c.login("alice", "secret 1")
	put(t, ts.root, "alice", "2.b.box", msg2, 0)
	expect(t, c.cmd("STAT"), fmt.Sprintf("+OK 1 %d", len(msg1)))
	expect(t, c.cmd("DELE 1"), "+OK")
	expect(t, c.cmd("QUIT"), "+OK mail.example.test POP3 server signing off (0 messages left)")
	c = ts.dial(t)
	c.login("alice", "secret 1")
	expect(t, c.cmd("UIDL"), "+OK")
	if got := c.multi(); got != "1 2.b.box\r\n" {
		t.Fatalf("UIDL in the next session = %q", got)
	}
}

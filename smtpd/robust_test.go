package smtpd

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/connlimit"
	"concierge/internal/mailaddr"
	"concierge/internal/testnet"
	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

// logSink collects a server's log for tests that look for a line.
type logSink = testnet.SafeBuffer

// buggyDir is a Directory with a bug: looking up "boom" panics.
type buggyDir struct{ staticDir }

func (d buggyDir) Lookup(a mailaddr.Address) ([]string, []string, bool) {
	if a.Local == "boom" {
		var m map[string]bool
		m[a.Local] = true // a nil map write, as a real bug would
	}
	return d.staticDir.Lookup(a)
}

// newServerWith is newTestServer with a Directory, limits and a log of
// the test's choosing.
func newServerWith(t testing.TB, dir func(root string) Directory, set Settings, log *slog.Logger) *Server {
	t.Helper()
	root := t.TempDir()
	q, err := queue.Open(filepath.Join(root, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(root, "mx.example.test", q, nil)
	if err != nil {
		t.Fatal(err)
	}
	set.Hostname, set.Dir, set.Postmaster = "mx.example.test", dir(root), "postmaster@example.test"
	set.MaxMessageBytes, set.MaxRecipients = 1<<20, 10
	if set.IdleTimeout == 0 {
		set.IdleTimeout = 10 * time.Second
	}
	s := New(st, &set, log)
	t.Cleanup(func() { s.Close(); st.Close() })
	return s
}

func serve(t testing.TB, s *Server, kind ListenerKind) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(kind, l)
	return l.Addr().String()
}

// smtpClient is a line-level SMTP client for tests.
type smtpClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialFrom(t testing.TB, local, addr string) *smtpClient {
	t.Helper()
	d := net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &smtpClient{t: t, conn: c, r: bufio.NewReader(c)}
}

// reply reads one whole reply and returns its last line.
func (c *smtpClient) reply() string {
	c.t.Helper()
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (%q)", err, l)
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (c *smtpClient) cmd(line string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

func expectReply(t testing.TB, got, want string) {
	t.Helper()
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got %q, want %q...", got, want)
	}
}

// waitConns waits until the server serves n connections.
func waitConns(t testing.TB, s *Server, n int) {
	t.Helper()
	if !testnet.WaitFor(10*time.Second, func() bool { return s.tcp.Conns() == n }) {
		t.Fatalf("%d connections, want %d", s.tcp.Conns(), n)
	}
}

// Issue 9 item 1: a bug in a command handler ends that session only, is
// logged as an error with its stack, and frees its slot.
func TestPanicInHandlerEndsOnlyThatSession(t *testing.T) {
	sink := &logSink{}
	s := newServerWith(t, func(root string) Directory { return buggyDir{staticDir{root}} },
		Settings{MaxConns: 2}, slog.New(slog.NewTextHandler(sink, nil)))
	addr := serve(t, s, MX)
	other := dialFrom(t, "", addr)
	expectReply(t, other.reply(), "220 ")
	expectReply(t, other.cmd("EHLO other.test"), "250 ")
	for range 2 { // the second fits only if the first freed its slot
		c := dialFrom(t, "", addr)
		expectReply(t, c.reply(), "220 ")
		expectReply(t, c.cmd("EHLO c.test"), "250 ")
		expectReply(t, c.cmd("MAIL FROM:<a@remote.test>"), "250 ")
		expectReply(t, c.cmd("RCPT TO:<boom@example.test>"), "421 ")
		if rest, err := io.ReadAll(c.r); err != nil || len(rest) > 0 {
			t.Fatalf("after the panic: %q, %v", rest, err)
		}
		waitConns(t, s, 1)
	}
	// The library logs (and so counts) a panic after closing the
	// connection: wait for the second log line.
	if !sink.Wait(10*time.Second, nil, func(l string) bool { return strings.Count(l, "panic: connection closed") == 2 }) {
		t.Fatalf("two panics not logged:\n%s", sink.String())
	}
	log := sink.String()
	for _, want := range []string{`level=ERROR msg="panic: connection closed"`, "assignment to entry in nil map", "buggyDir.Lookup", "port=smtp"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if s.Panics() != 2 {
		t.Errorf("Panics = %d, want 2", s.Panics())
	}
	expectReply(t, other.cmd("MAIL FROM:<a@remote.test>"), "250 ")
	expectReply(t, other.cmd("RCPT TO:<bob@example.test>"), "250 ")
	expectReply(t, other.cmd("QUIT"), "221 ")
}

// panickyConn is a connection whose reads panic once the client sends
// "PANIC": a stand-in for a bug in the front end, which runs where the
// SMTP library recovers nothing.
type panickyConn struct{ net.Conn }

func (p panickyConn) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if strings.Contains(string(b[:n]), "PANIC") {
		panic("front end bug")
	}
	return n, err
}

// Issue 9 item 1: a panic below go-smtp (in reading a command) used to
// end the process; now it ends its session only.
func TestPanicInFrontEndEndsOnlyThatSession(t *testing.T) {
	sink := &logSink{}
	s := newServerWith(t, func(root string) Directory { return staticDir{root} }, Settings{}, slog.New(slog.NewTextHandler(sink, nil)))
	addr := serve(t, s, MX)
	client, server := net.Pipe()
	defer client.Close()
	s.ServeConn(MX, panickyConn{server})
	client.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(client)
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	io.WriteString(client, "PANIC\r\n")
	if rest, err := io.ReadAll(r); err != nil || len(rest) > 0 {
		t.Fatalf("after the panic: %q, %v", rest, err)
	}
	waitConns(t, s, 0)
	if log := sink.String(); !strings.Contains(log, `level=ERROR msg="panic: connection closed" port=smtp`) ||
		!strings.Contains(log, "front end bug") || !strings.Contains(log, "panickyConn.Read") {
		t.Errorf("panic not logged with its stack:\n%s", log)
	}
	c := dialFrom(t, "", addr)
	expectReply(t, c.reply(), "220 ")
	expectReply(t, c.cmd("QUIT"), "221 ")
}

// Issue 9 item 8: twenty idle connections from each of ten addresses of
// one /24 on port 25 take at most one network's share of port 25's pool;
// the excess gets 421, and clients from other networks and on the
// submission port are still served.
func TestIdleFloodLeavesOthersServed(t *testing.T) {
	s := newServerWith(t, func(root string) Directory { return staticDir{root} }, Settings{
		MaxConns: connlimit.DefaultTotal, MaxConnsPerIP: connlimit.DefaultPerAddr, MaxConnsPerNet: connlimit.DefaultPerNet,
	}, nil)
	mx, sub := serve(t, s, MX), serve(t, s, Submission)
	greeted, refused := 0, 0
	for host := 1; host <= 10; host++ {
		for range 20 {
			c := dialFrom(t, fmt.Sprintf("127.1.1.%d", host), mx)
			switch l := c.reply(); {
			case strings.HasPrefix(l, "220 "):
				greeted++
			case strings.HasPrefix(l, "421 4.7.0 Too many connections"):
				refused++
			default:
				t.Fatalf("host %d: %q", host, l)
			}
		}
	}
	if greeted != connlimit.DefaultPerNet || refused != 200-connlimit.DefaultPerNet {
		t.Errorf("%d greeted, %d refused; want %d and %d", greeted, refused, connlimit.DefaultPerNet, 200-connlimit.DefaultPerNet)
	}
	if n := s.Rejected.Load(); n != uint64(refused) {
		t.Errorf("Rejected = %d, want %d", n, refused)
	}
	for _, c := range []struct{ local, addr, what string }{
		{"127.2.0.1", mx, "port 25 from another /24"},
		{"127.1.1.1", sub, "port 587 from the flooding /24"},
		{"127.3.0.1", sub, "port 587 from another /24"},
	} {
		cl := dialFrom(t, c.local, c.addr)
		if l := cl.reply(); !strings.HasPrefix(l, "220 ") {
			t.Errorf("%s: %q", c.what, l)
			continue
		}
		expectReply(t, cl.cmd("EHLO c.test"), "250 ")
	}
}

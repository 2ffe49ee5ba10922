package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/authlimit"
	"concierge/internal/mailaddr"
	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

// staticDir is a fixed directory for in-process protocol tests: domain
// example.test with user bob (password "secret-pw").
type staticDir struct{ root string }

func (d staticDir) IsLocalDomain(dom string) bool { return dom == "example.test" }
func (d staticDir) Lookup(a mailaddr.Address) ([]string, []string, bool) {
	if a.Local == "bob" || a.Local == "postmaster" {
		return []string{"bob"}, nil, true
	}
	return nil, nil, false
}
func (d staticDir) CanSendAs(u string, a mailaddr.Address) bool {
	return a.String() == u+"@example.test"
}
func (d staticDir) Authenticate(_ context.Context, login, pw string, _ netip.Addr) (string, error) {
	if login == "bob" && pw == "secret-pw" {
		return "bob", nil
	}
	return "", authlimit.ErrBadCredentials
}
func (d staticDir) Maildir(u string) string { return filepath.Join(d.root, "mail", u) }

func newTestServer(t testing.TB) (*Server, string) {
	return newTestServerWith(t, Settings{
		MaxMessageBytes: 1 << 20, MaxRecipients: 3, IdleTimeout: 2 * time.Second, MaxConns: 10, MaxConnsPerIP: 10,
		Postmaster: "postmaster@example.test",
	})
}

// newTestServerWith is newTestServer with other settings (the hostname and
// directory are set).
func newTestServerWith(t testing.TB, set Settings) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, "mx.example.test", q, nil)
	if err != nil {
		t.Fatal(err)
	}
	set.Hostname, set.Dir = "mx.example.test", staticDir{dir}
	s := New(st, &set, nil)
	t.Cleanup(func() { s.Close(); st.Close() })
	return s, dir
}

// dialog runs a scripted session over loopback TCP, closes the sending
// side, and returns all replies.
func dialog(t testing.TB, s *Server, input string) string {
	t.Helper()
	var addr string
	for _, a := range s.tcp.Addrs() {
		addr = a.String()
	}
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(MX, l)
		addr = l.Addr().String()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write([]byte(input))
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("session did not end: %v\n%q", err, out)
	}
	return string(out)
}

func TestSessionReplies(t *testing.T) {
	s, dir := newTestServer(t)
	out := dialog(t, s, "EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<nobody@example.test>\r\n"+
		"RCPT TO:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<bob@example.test>\r\n"+
		"DATA\r\nSubject: t\r\n\r\nbody\n.\nstill body\r\n.\r\nBDAT 10 LAST\r\nNOOP\r\nRSET\r\nQUIT\r\n")
	// Every reply, in order: our own wording, not the library's.
	want := []string{
		"220 mx.example.test ESMTP Service Ready",
		"250-mx.example.test Hello c.test",
		"250 2.1.0 Ok",
		"250 2.1.5 Ok", // <postmaster> means postmaster@ the primary domain
		"550 5.1.1 <nobody@example.test>: no such user here",
		"554 5.7.1 Relaying denied: this server only accepts mail for its own domains",
		"250 2.1.5 Ok",
		"250 2.1.5 Ok",
		"452 4.5.3 Maximum limit of 3 recipients reached",
		"354 End data with <CR><LF>.<CR><LF>",
		"250 2.0.0 Ok: queued as ",
		"502 5.5.1 BDAT is not supported; use DATA",
		"250 2.0.0 Ok",
		"250 2.0.0 Ok",
		"221 2.0.0 Bye",
	}
	var got []string // the first line of each reply
	cont := false
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if !cont {
			got = append(got, l)
		}
		cont = len(l) > 3 && l[3] == '-'
	}
	if len(got) != len(want) {
		t.Fatalf("got %d replies, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("reply %d = %q, want %q...", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"Roger", "I'll make sure", "successfully done", "Go ahead", "STARTTLS", "AUTH", "CHUNKING"} {
		if strings.Contains(out, bad) {
			t.Errorf("reply contains %q:\n%s", bad, out)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "bob", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(files))
	}
	if id := strings.TrimPrefix(got[10], "250 2.0.0 Ok: queued as "); filepath.Base(files[0]) != id {
		t.Errorf("queued as %q, stored as %q", id, filepath.Base(files[0]))
	}
	data, _ := os.ReadFile(files[0])
	if !bytes.Contains(data, []byte("body\r\n.\r\nstill body\r\n")) {
		t.Errorf("bare LF not made CRLF or message cut: %q", data)
	}
}

func TestLongCommandLineCloses(t *testing.T) {
	s, _ := newTestServer(t)
	out := dialog(t, s, "EHLO c.test\r\nNOOP "+strings.Repeat("x", MaxCommandLine)+"\r\nNOOP\r\n")
	if !strings.Contains(out, "500 5.5.2 Line too long") || strings.Count(out, "250 2.0.0") > 0 {
		t.Errorf("long line: %q", out)
	}
}

func TestTooManyErrorsCloses(t *testing.T) {
	s, _ := newTestServer(t)
	out := dialog(t, s, "EHLO c.test\r\nFOO\r\nBAR\r\nBAZ\r\nQUX\r\nNOOP\r\nNOOP\r\n")
	// Four refused lines (501: the library cannot parse them), then
	// the session ends with a 500 before the NOOPs are answered.
	lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
	if strings.Count(out, "\r\n501 ") != 4 || !strings.HasPrefix(lines[len(lines)-1], "500 ") || strings.Contains(out, "250 2.0.0 Ok") {
		t.Errorf("no disconnect after errors: %q", out)
	}
}

func TestPerIPLimit(t *testing.T) {
	s, _ := newTestServer(t)
	set := *s.settings.Load()
	set.MaxConnsPerIP = 2
	s.Configure(&set)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(MX, l)
	var conns []*bufio.Reader
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		conns = append(conns, bufio.NewReader(c))
	}
	for i, r := range conns {
		line, _ := r.ReadString('\n')
		want := "220 "
		if i == 2 {
			want = "421 4.7.0"
		}
		if !strings.HasPrefix(line, want) {
			t.Errorf("connection %d: %q, want %q", i, line, want)
		}
	}
}

func TestShutdownAnswers421(t *testing.T) {
	s, _ := newTestServer(t)
	client, server := net.Pipe()
	s.ServeConn(MX, server)
	r := bufio.NewReader(client)
	client.SetDeadline(time.Now().Add(5 * time.Second))
	r.ReadString('\n')
	go client.Write([]byte("EHLO c.test\r\n"))
	for {
		l, err := r.ReadString('\n')
		if err != nil || strings.HasPrefix(l, "250 ") {
			break
		}
	}
	done := make(chan error)
	go func() { done <- s.Shutdown(t.Context()) }()
	line, _ := r.ReadString('\n')
	if !strings.HasPrefix(line, "421 4.3.2") {
		t.Errorf("idle session at shutdown got %q, want 421", line)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestGreetingsNameTheServer(t *testing.T) {
	s, _ := newTestServer(t)
	out := dialog(t, s, "HELO c.test\r\nEHLO c.test\r\nQUIT\r\n")
	for _, want := range []string{"220 mx.example.test ", "250 mx.example.test Hello c.test\r\n", "250-mx.example.test Hello c.test\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
}

// Settings left at zero take the defaults (the ones the appliance's
// settings start from): the server takes mail, not 421 or a zero timeout.
func TestZeroSettingsTakeDefaults(t *testing.T) {
	s, dir := newTestServerWith(t, Settings{})
	set := s.settings.Load()
	if set.MaxMessageBytes != DefaultMaxMessageBytes || set.MaxRecipients != DefaultMaxRecipients ||
		set.IdleTimeout != DefaultIdleTimeout || set.MaxConns != DefaultMaxConns || set.MaxConnsPerIP != DefaultMaxConnsPerIP {
		t.Fatalf("zero settings became %+v", set)
	}
	out := dialog(t, s, "EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: t\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	if got, _ := filepath.Glob(filepath.Join(dir, "mail", "bob", "new", "*")); len(got) != 1 || strings.Contains(out, "421 ") {
		t.Fatalf("a server with default settings did not take mail (%d stored):\n%s", len(got), out)
	}
}

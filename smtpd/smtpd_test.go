package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
func (d staticDir) Verify(u, p string) bool { return u == "bob" && p == "secret-pw" }
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

// dialogAddrs holds the address of each server's dialog listener.
var dialogAddrs sync.Map // *Server → string

// dialog runs a scripted session over loopback TCP, closes the sending
// side, and returns all replies.
func dialog(t testing.TB, s *Server, input string) string {
	t.Helper()
	addr, ok := dialogAddrs.Load(s)
	if !ok {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(MX, l)
		addr = l.Addr().String()
		dialogAddrs.Store(s, addr)
	}
	c, err := net.Dial("tcp", addr.(string))
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
		"DATA\r\nSubject: t\r\n\r\nbody\n.\nstill body\r\n.\r\nBDAT 10 LAST\r\nQUIT\r\n")
	for _, want := range []string{
		"220 mx.example.test",
		"250-STARTTLS\r\n", // wait: no TLS config, so absent
		"250 2.0.0 I'll make sure <postmaster@example.test> gets this",
		"550 5.1.1 <nobody@example.test>: no such user here",
		"554 5.7.1 Relaying denied",
		"452 4.5.3 Maximum limit of 3 recipients reached",
		"250 2.0.0 OK: queued",
		"502 5.5.1 BDAT is not supported",
		"221 2.0.0 Bye",
	} {
		if want == "250-STARTTLS\r\n" {
			if strings.Contains(out, want) {
				t.Error("STARTTLS offered without a certificate")
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "CHUNKING") {
		t.Error("CHUNKING advertised")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "bob", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(files))
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
	if !strings.Contains(out, "Too many errors") {
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

func TestScanData(t *testing.T) {
	for _, tc := range []struct {
		in  string
		end int
	}{
		{".\r\n", 3},
		{"a\r\n.\r\nMAIL", 6},
		{"a\n.\nb\r.\r\n", -1},
		{"a\r\n..\r\n", -1},
		{"a\r\r\n.\r\n", 7},
	} {
		c := &frontConn{dataPos: 2}
		// Byte by byte, to check the match carries across reads.
		got := -1
		for i := 0; i < len(tc.in) && got < 0; i++ {
			if e := c.scanData([]byte{tc.in[i]}); e >= 0 {
				got = i + 1
			}
		}
		if got != tc.end {
			t.Errorf("scanData(%q) = %d, want %d", tc.in, got, tc.end)
		}
	}
}

func TestCRLFWriter(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\r\nc\rd": "a\r\nb\r\nc\r\nd",
		"\n\n":         "\r\n\r\n",
		"x\r\r\ny":     "x\r\n\r\ny",
	} {
		var b bytes.Buffer
		w := &crlfWriter{w: &b}
		for i := range in { // split writes
			w.Write([]byte{in[i]})
		}
		if b.String() != want {
			t.Errorf("crlf(%q) = %q, want %q", in, b.String(), want)
		}
	}
}

// FuzzSession feeds arbitrary bytes to a live session: the server must
// neither crash nor hang, and must keep serving.
func FuzzSession(f *testing.F) {
	f.Add("EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
	f.Add("HELO x\r\nRCPT TO:<postmaster> NOTIFY=NEVER\r\nAUTH PLAIN\r\nSTARTTLS\r\n")
	f.Add("EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<\"a@b\"@example.test>\r\nDATA\r\n\n.\n\r.\r\n.\r\n")
	f.Add("BDAT 5\r\nabcde")
	s, _ := newTestServer(f)
	f.Fuzz(func(t *testing.T, input string) {
		out := dialog(t, s, input)
		if !strings.HasPrefix(out, "220 ") {
			t.Fatalf("no greeting: %q", out)
		}
	})
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

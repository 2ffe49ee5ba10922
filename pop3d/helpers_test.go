package pop3d

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/authlimit"
	"concierge/internal/maildir"
)

// users is an Authenticator over a fixed table of names and passwords;
// a login may also be NAME@example.test. The login "busy" is refused for
// now.
type users map[string]string

func (u users) Authenticate(_ context.Context, login, pass string, _ netip.Addr) (string, error) {
	if login == "busy" {
		return "", authlimit.ErrTryLater
	}
	name := strings.TrimSuffix(login, "@example.test")
	if p, ok := u[name]; !ok || p != pass {
		return "", authlimit.ErrBadCredentials
	}
	return name, nil
}

// MaildirBoxes serves the Maildirs under Root/<user>; tests and the
// re-executed test server use it (the appliance has its own adapter).
type MaildirBoxes struct{ Root string }

func (b MaildirBoxes) Lock(user string) (Maildrop, error) {
	if user == "" || strings.ContainsAny(user, "/\x00") || user == "." || user == ".." {
		return nil, errors.New("bad user name")
	}
	m, err := maildir.Lock(filepath.Join(b.Root, user))
	if errors.Is(err, maildir.ErrInUse) {
		return nil, ErrInUse
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// put writes a message into root/user/new with CRLF line endings kept
// as given, an mtime age ago so the order is defined.
func put(t testing.TB, root, user, name, body string, age time.Duration) {
	t.Helper()
	d := filepath.Join(root, user)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(d, "new", name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(-age)
	os.Chtimes(p, mt, mt)
}

// files lists the message files of a user (new and cur).
func files(root, user string) []string {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		m, _ := filepath.Glob(filepath.Join(root, user, sub, "*"))
		for _, f := range m {
			out = append(out, sub+"/"+filepath.Base(f))
		}
	}
	return out
}

// selfSigned returns a server TLS config for host.
func selfSigned(t testing.TB, host string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

type testServer struct {
	srv  *Server
	root string
	addr string
	log  *syncBuf
}

type syncBuf struct {
	b strings.Builder
	c chan struct{}
}

// newTestServer serves on 127.0.0.1 with user "alice" / "secret 1" and
// "bob" / "pw"; set may be nil (then loopback is trusted for plaintext).
func newTestServer(t testing.TB, set *Settings, opts ...func(*Server)) *testServer {
	t.Helper()
	if set == nil {
		set = &Settings{TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	}
	if set.Hostname == "" {
		set.Hostname = "mail.example.test"
	}
	root := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv := NewServer(users{"alice": "secret 1", "bob": "pw"}, MaildirBoxes{Root: root}, set, log)
	for _, o := range opts {
		o(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &testServer{srv: srv, root: root, addr: l.Addr().String()}
}

// client is a line-level POP3 client for tests.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (ts *testServer) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, conn: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if g := cl.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the first response line.
func (c *client) cmd(format string, args ...any) string {
	c.t.Helper()
	c.send(fmt.Sprintf(format, args...) + "\r\n")
	return c.line()
}

// multi reads the body of a multi-line response, undoing dot-stuffing;
// lines keep their CRLF.
func (c *client) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if l == ".\r\n" {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
}

// expect fails unless got starts with want.
func expect(t testing.TB, got, want string) {
	t.Helper()
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got %q, want %q...", got, want)
	}
}

// login logs in with USER/PASS.
func (c *client) login(user, pass string) {
	c.t.Helper()
	expect(c.t, c.cmd("USER %s", user), "+OK")
	expect(c.t, c.cmd("PASS %s", pass), "+OK")
}

// closed reports whether the server closed the connection (after any
// pending lines, which it returns).
func (c *client) closed() (bool, string) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	return err == nil, string(rest)
}

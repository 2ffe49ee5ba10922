package smtpd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FuzzSession drives the whole command loop (front end, go-smtp's parser
// and our session's handlers) with arbitrary input in every state a
// client can reach: a stranger on port 25, a client of a relay network,
// implicit TLS on port 465, and logged in over TLS. The session must end
// (no hang), without a panic, and the server must keep serving.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"HELO x\r\nRCPT TO:<postmaster> NOTIFY=NEVER\r\nAUTH PLAIN\r\nSTARTTLS\r\n",
		"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<\"a@b\"@example.test>\r\nDATA\r\n\n.\n\r.\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<bob@example.test>\r\nRCPT TO:<x@remote.test>\r\nRCPT TO:<u%r@example.test>\r\nDATA\r\nSubject: s\r\n\r\nb\r\r\n.\r\nRSET\r\n",
		"EHLO x\r\nAUTH LOGIN\r\nYm9i\r\nc2VjcmV0LXB3\r\nAUTH PLAIN =\r\nAUTH PLAIN\r\n*\r\nAUTH \t \r\n",
		"AUTH \t \r\nEHLO \r\nMAIL  \r\nRCPT\r\n",
		"BDAT 5\r\nabcde",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x02\x00\x01",
	} {
		f.Add(s)
	}
	s := newServerWith(f, func(root string) Directory { return staticDir{root} }, Settings{
		IdleTimeout:   2 * time.Second,
		TLSConfig:     selfSigned(f),
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
	}, nil)
	mx, tlsPort := serve(f, s, MX), serve(f, s, SubmissionTLS)
	login := "EHLO fuzz.test\r\nAUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00bob\x00secret-pw")) + "\r\n"
	f.Fuzz(func(t *testing.T, input string) {
		for _, m := range []struct {
			name, local, addr, prefix string
			tls                       bool
		}{
			{"port 25", "127.0.0.1", mx, "", false},
			{"relay network", "127.0.0.2", mx, "", false},
			{"port 465", "127.0.0.1", tlsPort, "", true},
			{"logged in", "127.0.0.1", tlsPort, login, true},
		} {
			out := fuzzDialog(t, m.local, m.addr, m.tls, m.prefix+input)
			if !strings.HasPrefix(out, "220 ") {
				t.Fatalf("%s: no greeting: %q", m.name, out)
			}
			if m.prefix != "" && !strings.Contains(out, "\r\n235 ") {
				t.Fatalf("%s: login failed: %q", m.name, out)
			}
			waitConns(t, s, 0)
			if s.Panics() > 0 {
				t.Fatalf("%s: the session panicked (go test -v shows the log)", m.name)
			}
		}
	})
}

// fuzzDialog sends input on a new connection, closes the sending side
// and returns every reply.
func fuzzDialog(t *testing.T, local, addr string, useTLS bool, input string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c, closeWrite := raw, raw.(*net.TCPConn).CloseWrite
	if useTLS {
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c, closeWrite = tc, tc.CloseWrite
	}
	go func() {
		io.WriteString(c, input)
		closeWrite()
	}()
	out, err := io.ReadAll(c)
	// A server that closes with input unread (after QUIT, say) resets
	// the connection: that is an end too.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("session did not end: %v\n%q", err, out)
	}
	return string(out)
}

// selfSigned is a server TLS configuration with a throwaway certificate.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"mx.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

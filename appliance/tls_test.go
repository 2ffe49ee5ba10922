package appliance

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/appliance/config"
)

// handshake runs a TLS handshake between a client with cc and a server
// with sc and returns the client's error.
func handshake(t *testing.T, sc, cc *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	deadline := time.Now().Add(10 * time.Second)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	go func() {
		tls.Server(server, sc).Handshake()
		server.Close()
	}()
	c := tls.Client(client, cc)
	err := c.Handshake()
	return c.ConnectionState(), err
}

// The mail ports offer TLS 1.3 and TLS 1.2 with AEAD ciphers only: a
// client that offers nothing but CBC suites gets no connection.
func TestTLSOffersNoCBCSuites(t *testing.T) {
	env := &Env{DataDir: t.TempDir()}
	cfg := config.Default()
	cfg.Hostname = "mx.example.test"
	sc, err := env.TLSConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	}
	if _, err := handshake(t, sc, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		t.Error("a client offering only CBC suites got a TLS 1.2 connection")
	}
	for _, s := range tls12Suites {
		if !isAEAD(s) {
			t.Errorf("offered suite %#04x is not an AEAD suite", s)
		}
	}
	st, err := handshake(t, sc, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil || st.Version != tls.VersionTLS12 || !isAEAD(st.CipherSuite) {
		t.Errorf("TLS 1.2 client: %v, %s", err, tls.CipherSuiteName(st.CipherSuite))
	}
	st, err = handshake(t, sc, &tls.Config{InsecureSkipVerify: true})
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 client: %v, version %#x", err, st.Version)
	}
}

// isAEAD reports whether s is a known suite with an AEAD cipher.
func isAEAD(s uint16) bool {
	n := tls.CipherSuiteName(s)
	return strings.Contains(n, "_GCM_") || strings.Contains(n, "_CHACHA20_POLY1305_")
}

// A certificate that cannot be read (here: the path is a directory) is an
// error; the key next to it is not replaced by a new one.
func TestSelfSignedNotReplacedOnReadError(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
	if err := os.Mkdir(certFile, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("the admin's key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ensureSelfSigned(certFile, keyFile, "mail.example.test"); err == nil {
		t.Fatal("an unreadable certificate was not an error")
	}
	if b, _ := os.ReadFile(keyFile); string(b) != "the admin's key" {
		t.Fatalf("the key was replaced: %q", b)
	}
	// Without any files, a certificate and key are made.
	dir = t.TempDir()
	certFile, keyFile = filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
	if err := ensureSelfSigned(certFile, keyFile, "mail.example.test"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
}

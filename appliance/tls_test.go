package appliance

import (
	"os"
	"path/filepath"
	"testing"
)

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

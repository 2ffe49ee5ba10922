// Package firmware is the box's side of firmware bundles: the manifest
// (version, kernel version, SHA-256 of each file), its ed25519 signature,
// and the checks a bundle must pass before it is installed. The builder
// (image/cmd/mkimage) writes bundles with the same types.
//
// A bundle is an uncompressed tar file with, in this order:
//
//	manifest.json   the Manifest, as JSON
//	manifest.sig    the ed25519 signature of manifest.json's bytes
//	vmlinuz         the kernel
//	initrd.gz       the initramfs, with the concierge binary as /init
package firmware

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Version is the firmware version of this binary, set at build time with
// -ldflags "-X concierge/internal/firmware.Version=...".
var Version = "dev"

// PublicKey is the hex ed25519 key that bundles must be signed with. The
// default is the development key (DevSeed), which is public and so
// protects nothing: release builds set their own with -ldflags
// "-X concierge/internal/firmware.PublicKey=...".
var PublicKey = hex.EncodeToString(DevKey().Public().(ed25519.PublicKey))

// DevSeed derives the development signing key. It is not secret: a
// bundle signed with it proves only that it was built for development.
const DevSeed = "concierge development signing key (not secret)"

// DevKey is the development signing key.
func DevKey() ed25519.PrivateKey {
	s := sha256.Sum256([]byte(DevSeed))
	return ed25519.NewKeyFromSeed(s[:])
}

// The files of a bundle, in tar order.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	KernelFile    = "vmlinuz"
	InitrdFile    = "initrd.gz"
)

// PayloadFiles are the files the manifest lists.
var PayloadFiles = []string{KernelFile, InitrdFile}

// Manifest describes one firmware build.
type Manifest struct {
	Version string `json:"version"`
	// Kernel is the kernel release and the Debian package it came from,
	// e.g. "6.1.192-concierge (built from linux-source-6.1 6.1.192-3,
	// image/kernel/concierge.config)" or "6.1.0-57-amd64
	// (linux-image-6.1.0-57-amd64 6.1.192-3)".
	Kernel string `json:"kernel"`
	// Files maps each payload file name to its hex SHA-256.
	Files map[string]string `json:"files"`
}

// Bundle is a verified bundle in memory.
type Bundle struct {
	Manifest Manifest
	Raw      []byte // manifest.json as signed
	Files    map[string][]byte
}

// Errors of Verify, for callers that show them to the admin.
var (
	ErrSignature = errors.New("firmware: the signature does not match the manifest: the bundle is not signed with this box's key, or the manifest was changed")
	ErrHash      = errors.New("firmware: a file does not match the SHA-256 in the manifest: the bundle is damaged")
	ErrFormat    = errors.New("firmware: not a firmware bundle")
)

// MaxBundle bounds the size of a bundle read into memory.
const MaxBundle = 128 << 20

// Write writes a signed bundle.
func Write(w io.Writer, m Manifest, files map[string][]byte, key ed25519.PrivateKey) error {
	m.Files = map[string]string{}
	for _, n := range PayloadFiles {
		d, ok := files[n]
		if !ok {
			return fmt.Errorf("firmware: bundle needs %s", n)
		}
		s := sha256.Sum256(d)
		m.Files[n] = hex.EncodeToString(s[:])
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		// Fixed owner, mode and time: reproducible.
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ManifestFile, raw); err != nil {
		return err
	}
	if err := add(SignatureFile, ed25519.Sign(key, raw)); err != nil {
		return err
	}
	for _, n := range PayloadFiles {
		if err := add(n, files[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Read reads a bundle and verifies it against the public key (hex): the
// signature of the manifest, then the SHA-256 of every file.
func Read(r io.Reader, publicKey string) (*Bundle, error) {
	pub, err := hex.DecodeString(publicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("firmware: the compiled-in public key is not a hex ed25519 key")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(io.LimitReader(r, MaxBundle))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		if _, dup := files[h.Name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrFormat, h.Name)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		files[h.Name] = d
	}
	raw, sig := files[ManifestFile], files[SignatureFile]
	if raw == nil || sig == nil {
		return nil, fmt.Errorf("%w: no %s and %s", ErrFormat, ManifestFile, SignatureFile)
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), raw, sig) {
		return nil, ErrSignature
	}
	b := &Bundle{Raw: raw, Files: map[string][]byte{}}
	if err := json.Unmarshal(raw, &b.Manifest); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrFormat, err)
	}
	names := make([]string, 0, len(b.Manifest.Files))
	for n := range b.Manifest.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range PayloadFiles {
		if _, ok := b.Manifest.Files[n]; !ok {
			return nil, fmt.Errorf("%w: the manifest does not list %s", ErrFormat, n)
		}
	}
	for _, n := range names {
		d, ok := files[n]
		if !ok {
			return nil, fmt.Errorf("%w: %s is listed in the manifest but missing", ErrFormat, n)
		}
		s := sha256.Sum256(d)
		if !bytes.Equal([]byte(hex.EncodeToString(s[:])), []byte(b.Manifest.Files[n])) {
			return nil, fmt.Errorf("%w (%s)", ErrHash, n)
		}
		b.Files[n] = d
	}
	return b, nil
}

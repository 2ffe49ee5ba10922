package appliance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"concierge/appliance/config"
	"concierge/internal/durable"
)

// TLSConfig returns the server TLS configuration for the mail ports: the
// configured certificate, or a self-signed one for the hostname that is
// made on first start and kept in the data directory (remade when the
// hostname changes).
func (e *Env) TLSConfig(cfg *config.Config) (*tls.Config, error) {
	certFile, keyFile := cfg.SMTP.TLSCert, cfg.SMTP.TLSKey
	if certFile == "" {
		certFile = filepath.Join(e.DataDir, "tls", "selfsigned.crt")
		keyFile = filepath.Join(e.DataDir, "tls", "selfsigned.key")
		if err := ensureSelfSigned(certFile, keyFile, cfg.Hostname); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("appliance: tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CipherSuites: tls12Suites}, nil
}

// tls12Suites are the TLS 1.2 cipher suites offered: ECDHE with AEAD
// ciphers only (RFC 7525 4.2). The CBC suites Go would also offer are left
// out (Lucky Thirteen and other padding-oracle attacks); TLS 1.3 suites
// are not configurable and are all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ensureSelfSigned makes a new certificate and key when there is none, or
// the one there is for another name or expires within 30 days. A file it
// cannot read for another reason than its absence is an error: it is never
// replaced blindly.
func ensureSelfSigned(certFile, keyFile, host string) error {
	b, err := os.ReadFile(certFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("appliance: tls: %w", err)
	}
	if err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil && c.Subject.CommonName == host && time.Now().Before(c.NotAfter.Add(-30*24*time.Hour)) {
				_, err := os.Stat(keyFile)
				if err == nil {
					return nil
				}
				if !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("appliance: tls: %w", err)
				}
			}
		}
	}
	if err := durable.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"Concierge self-signed"}},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return durable.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

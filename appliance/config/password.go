package config

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// argon2id parameters (RFC 9106 second recommended option scaled to a small
// box: 19 MiB, 2 passes, as OWASP suggests).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 8

var weakPasswords = map[string]bool{
	"password": true, "password1": true, "12345678": true, "123456789": true,
	"1234567890": true, "qwertyui": true, "qwerty123": true, "letmein1": true,
	"iloveyou": true, "welcome1": true, "admin123": true, "changeme": true,
	"passw0rd": true, "abc12345": true, "11111111": true, "00000000": true,
}

// CheckPassword refuses passwords that are too easy to guess.
func CheckPassword(user, pw string) error {
	switch {
	case len(pw) < MinPasswordLength:
		return fmt.Errorf("password: too short (at least %d characters)", MinPasswordLength)
	case len(pw) > 1024:
		return errors.New("password: too long (at most 1024 characters)")
	case strings.EqualFold(pw, user) || strings.Contains(strings.ToLower(pw), strings.ToLower(user)) && len(user) >= 4:
		return errors.New("password: must not contain the user name")
	case weakPasswords[strings.ToLower(pw)]:
		return errors.New("password: too common")
	case strings.Count(pw, pw[:1]) == len(pw):
		return errors.New("password: must not be one repeated character")
	}
	return nil
}

// HashPassword returns an argon2id hash in PHC string form.
func HashPassword(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// IsPasswordHash reports whether h looks like a hash VerifyPassword reads.
func IsPasswordHash(h string) bool {
	if strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$") {
		_, err := bcrypt.Cost([]byte(h))
		return err == nil
	}
	_, _, _, _, _, err := parseArgon(h)
	return err == nil
}

func parseArgon(h string) (t, m uint32, p uint8, salt, key []byte, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return 0, 0, 0, nil, nil, errors.New("not an argon2id hash")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return 0, 0, 0, nil, nil, err
	}
	if t < 1 || t > 10 || m < 8 || m > 1<<20 || p < 1 {
		return 0, 0, 0, nil, nil, errors.New("argon2id parameters out of range")
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return 0, 0, 0, nil, nil, errors.New("bad salt")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return 0, 0, 0, nil, nil, errors.New("bad key")
	}
	return t, m, p, salt, key, nil
}

// VerifyPassword reports whether pw matches hash h.
func VerifyPassword(h, pw string) bool {
	if strings.HasPrefix(h, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil
	}
	t, m, p, salt, key, err := parseArgon(h)
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// DummyVerify spends the time of one verification, so that an unknown
// user takes as long to refuse as a wrong password.
func DummyVerify(pw string) {
	argon2.IDKey([]byte(pw), []byte("concierge-dummy!"), argonTime, argonMemory, argonThreads, argonKeyLen)
}

package config

import (
	"errors"
	"fmt"
	"strings"

	"concierge/internal/pwhash"
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

// HashPassword returns a new argon2id hash of pw (see internal/pwhash).
func HashPassword(pw string) string { return pwhash.Hash(pw) }

// IsPasswordHash reports whether h is a hash the password check reads.
func IsPasswordHash(h string) bool { return pwhash.IsHash(h) }

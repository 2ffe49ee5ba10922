package pop3d

import (
	"bytes"
	"errors"
	"strings"
)

// Errors of the command parser.
var (
	errBadCommand = errors.New("pop3d: malformed command")
	errBadNumber  = errors.New("pop3d: invalid number")
)

// parseCommand splits a command line (RFC 1939 section 3: a keyword of
// three or four characters, case-insensitive, then arguments separated by
// single spaces, then CRLF) into the upper-cased keyword and the rest. A
// bare LF ending is tolerated. Control characters other than the line
// ending are refused; the keyword must be letters.
func parseCommand(line []byte) (verb, arg string, err error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return "", "", errBadCommand
		}
	}
	v, a, _ := bytes.Cut(line, []byte(" "))
	if len(v) < 3 || len(v) > 4 {
		return "", "", errBadCommand
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", "", errBadCommand
		}
	}
	return strings.ToUpper(string(v)), string(a), nil
}

// fields splits arguments on spaces (RFC 1939 allows one; some clients
// send more).
func fields(arg string) []string { return strings.Fields(arg) }

// parseNumber parses a message number or line count: decimal digits only,
// no sign, at most 9 digits (RFC 1939 section 3 limits arguments to 40
// characters; no maildrop has a billion messages).
func parseNumber(s string) (int, error) {
	if len(s) == 0 || len(s) > 9 {
		return 0, errBadNumber
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, errBadNumber
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

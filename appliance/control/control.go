// Package control is the one control API of the box: every settings
// change, every action (queue, NetBIOS names, status, log, backup and
// restore, restart) and every readiness event is an operation ("op") in
// one table. The CLI calls it over the unix socket DATA/control.sock
// (HTTP/JSON, root only) while the server runs, and on the data directory
// itself when it does not; the setup page calls it in process. IDs, names
// and values are checked at this one boundary.
package control

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Args are the arguments of an op, by name. Lists are comma-separated.
type Args map[string]string

// Caller runs ops: a *Service in process, a *Client over the socket.
// result is a pointer the op's JSON result is decoded into, or nil.
type Caller interface {
	Call(ctx context.Context, op string, args Args, result any) error
}

// The error codes of an op.
const (
	// CodeInvalid: an argument is wrong; Fields says which and why.
	CodeInvalid = "invalid"
	// CodeNotFound: the thing named (a user, a queued message) is not there.
	CodeNotFound = "not_found"
	// CodeUnavailable: the op needs the running server, and it is not
	// running; or it may be tried again later.
	CodeUnavailable = "unavailable"
	// CodeUnauthorized: a wrong admin password, or too many attempts.
	CodeUnauthorized = "unauthorized"
	// CodeInternal: anything else (a disk error, a bug).
	CodeInternal = "internal"
)

// Error is the error every op returns. Fields maps a form field name (an
// argument's name) to a message for a person.
type Error struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

func (e *Error) Error() string {
	if e.Message != "" || len(e.Fields) == 0 {
		return e.Message
	}
	var parts []string
	for _, f := range sortedKeys(e.Fields) {
		parts = append(parts, e.Fields[f])
	}
	return strings.Join(parts, "; ")
}

// Errorf returns an *Error with a code and a message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrNotRunning is the answer of live-only ops when no server runs.
var ErrNotRunning = &Error{Code: CodeUnavailable, Message: "the server is not running"}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

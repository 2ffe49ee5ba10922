// Package queue is the outbound mail spool: one message file and one
// envelope file per message, written durably before the SMTP server says
// 250 (RFC 5321 4.5.4 and 6.1: once accepted, a message is the server's
// responsibility).
//
// Layout under the queue directory:
//
//	msg/ID        the message as received (with our Received: header)
//	env/ID.json   the envelope: sender, recipients and their delivery state
//	tmp/          envelopes being written
//
// The Runner (runner.go) delivers what is queued: it reloads every
// envelope at start, retries on a schedule given as data, warns the sender
// of a delay and gives up after a configurable age with a delivery status
// notification (RFC 3464), and bounds connections overall and per domain.
package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"concierge/internal/durable"
)

// MaxHops is the most Received: headers a message may arrive with: one
// with more is in a loop (RFC 5321 6.3; Postfix's hopcount_limit is the
// same 50). The SMTP server refuses it at DATA (554 5.4.6); the runner,
// which also sees the Received: header the box added, bounces a queued
// message with more than MaxHops+1 before sending it.
const MaxHops = 50

// ErrBadID is the error for a queue ID that is not of the form the store
// gives messages.
var ErrBadID = errors.New("queue: not a queue ID")

// ValidID reports whether id has the form of the unique names the store
// gives messages (seconds.MmicrosPpidQseq.host, store.UniqueName): digits
// and the letters M, P and Q, then a host name in which '/' and ':' are
// escaped. Every ID that comes from outside (the admin commands, request
// files, file names found in env/) passes here before it names a file, so
// that an ID can never be a path.
func ValidID(id string) error {
	if len(id) > 255 || !validID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	return nil
}

func validID(id string) bool {
	secs, rest, ok := strings.Cut(id, ".M")
	if !ok || !digits(secs) {
		return false
	}
	micros, rest, ok := strings.Cut(rest, "P")
	if !ok || !digits(micros) {
		return false
	}
	pid, rest, ok := strings.Cut(rest, "Q")
	if !ok || !digits(pid) {
		return false
	}
	seq, host, ok := strings.Cut(rest, ".")
	if !ok || !digits(seq) || host == "" {
		return false
	}
	for _, c := range host {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '\\':
		default:
			return false
		}
	}
	return true
}

func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Recipient is one recipient and its delivery state.
type Recipient struct {
	Addr      string    `json:"addr"`
	State     State     `json:"state"`
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	LastTry   time.Time `json:"last_try,omitzero"`
	// Status is the RFC 3463 code of the last failure, Diagnostic the
	// remote server's reply and RemoteMTA the host that gave it (for the
	// delivery status notification, RFC 3464 2.3).
	Status     string `json:"status,omitempty"`
	Diagnostic string `json:"diagnostic,omitempty"`
	RemoteMTA  string `json:"remote_mta,omitempty"`
	// Notified is set once the sender was told of the failure.
	Notified bool `json:"notified,omitempty"`
	// Forwarded is set for an address that an alias of ours forwards
	// to: its envelope sender is rewritten (SRS) when it goes out.
	Forwarded bool `json:"forwarded,omitempty"`
	// Notify is the recipient's RFC 3461 NOTIFY parameter as given
	// ("NEVER", or a comma list of SUCCESS, FAILURE, DELAY), empty when
	// the client gave none. ORcpt is its ORCPT parameter, decoded, as
	// "type;address" (RFC 3461 4.2).
	Notify string `json:"notify,omitempty"`
	ORcpt  string `json:"orcpt,omitempty"`
	// Success says how the recipient was delivered when a success notice
	// is ours to send: "delivered" (into a mailbox here) or "relayed" (to
	// a next hop that does not speak DSN).
	Success string `json:"success,omitempty"`
}

// Wants reports whether the recipient asked for (or, without NOTIFY,
// gets by default) a notice of the given kind. RFC 3461 4.1: NEVER asks
// for none; without NOTIFY a failure is reported and a delay may be; a
// success notice only when asked for.
func (rc *Recipient) Wants(kind NoticeKind) bool {
	if rc.Notify == "" {
		return kind == Failure || kind == Delay
	}
	want := map[NoticeKind]string{Failure: "FAILURE", Delay: "DELAY", Success: "SUCCESS"}[kind]
	for _, n := range strings.Split(rc.Notify, ",") {
		if strings.EqualFold(strings.TrimSpace(n), want) {
			return true
		}
	}
	return false
}

// State of one recipient.
type State string

// Recipient states.
const (
	Pending   State = "pending"
	Delivered State = "delivered"
	Failed    State = "failed"
)

// Envelope is a queued message's envelope.
type Envelope struct {
	ID   string `json:"id"`
	From string `json:"from"` // "" is the null sender (bounces)
	// Recipients in the order they were given.
	Recipients []Recipient `json:"recipients"`
	Received   time.Time   `json:"received"`
	// BodyOffset is where the message starts in msg/ID (the file may begin
	// with a Return-Path: header meant for local mailboxes).
	BodyOffset  int64     `json:"body_offset,omitempty"`
	Size        int64     `json:"size"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Warned is set once a delay notification was sent.
	Warned bool `json:"warned,omitempty"`
	// User is the authenticated submitter, if any.
	User string `json:"user,omitempty"`
	// Ret and EnvID are the RFC 3461 RET ("FULL" or "HDRS") and ENVID
	// parameters of MAIL FROM, empty when not given.
	Ret   string `json:"ret,omitempty"`
	EnvID string `json:"envid,omitempty"`
}

// Queue is a queue directory.
type Queue struct {
	Dir string
	// Notify, when set, is signalled (non-blocking) after new mail is queued.
	Notify chan struct{}
}

// Open creates the queue directories and removes half-written envelopes
// (never acknowledged to a client).
func Open(dir string) (*Queue, error) {
	q := &Queue{Dir: dir, Notify: make(chan struct{}, 1)}
	for _, d := range []string{"msg", "env", "tmp"} {
		if err := durable.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	for _, t := range tmps {
		os.Remove(t)
	}
	return q, nil
}

// MsgPath is the message file of id.
func (q *Queue) MsgPath(id string) string { return filepath.Join(q.Dir, "msg", id) }

// EnvPath is the envelope file of id.
func (q *Queue) EnvPath(id string) string { return filepath.Join(q.Dir, "env", id+".json") }

// Stage writes env into tmp/ (without fsync) and returns its path; the
// caller makes it durable and renames it to EnvPath (see store).
func (q *Queue) Stage(env *Envelope) (string, error) {
	b, err := json.Marshal(env)
	if err != nil {
		return "", err
	}
	p := filepath.Join(q.Dir, "tmp", env.ID+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	return p, nil
}

// Save rewrites an envelope durably (after a delivery attempt).
func (q *Queue) Save(env *Envelope) error {
	b, err := json.Marshal(env) // the same form as Stage writes
	if err != nil {
		return err
	}
	return durable.WriteFile(q.EnvPath(env.ID), b, 0o600)
}

// Load reads one envelope.
func (q *Queue) Load(id string) (*Envelope, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(q.EnvPath(id))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("queue: %s: %w", id, err)
	}
	return &env, nil
}

// List returns the IDs of every queued message.
func (q *Queue) List() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(q.Dir, "env", "*.json"))
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(m))
	for _, p := range m {
		if id := filepath.Base(p[:len(p)-len(".json")]); ValidID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Remove deletes a message and its envelope (envelope first, so a crash
// never leaves an envelope without its message).
func (q *Queue) Remove(id string) error {
	if err := ValidID(id); err != nil {
		return err
	}
	if err := os.Remove(q.EnvPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	os.Remove(q.MsgPath(id))
	return durable.SyncDir(filepath.Join(q.Dir, "env"))
}

// Done removes a delivered message without waiting for the directory to
// be durable: if the removal is lost in a crash, the message is delivered
// once more, which RFC 5321 6.1 prefers to losing it.
func (q *Queue) Done(id string) error {
	if err := os.Remove(q.EnvPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	os.Remove(q.MsgPath(id))
	return nil
}

// Kick wakes the delivery runner.
func (q *Queue) Kick() {
	if q.Notify == nil {
		return
	}
	select {
	case q.Notify <- struct{}{}:
	default:
	}
}

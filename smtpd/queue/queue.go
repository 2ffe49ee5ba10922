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
//	req/          requests from the admin commands (flush, retry, delete)
//
// The Runner (runner.go) delivers what is queued: it reloads every
// envelope at start, retries on a schedule given as data, warns the sender
// of a delay and gives up after a configurable age with a delivery status
// notification (RFC 3464), and bounds connections overall and per domain.
package queue

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"concierge/internal/durable"
)

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
	for _, d := range []string{"msg", "env", "tmp", "req"} {
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
		ids = append(ids, filepath.Base(p[:len(p)-len(".json")]))
	}
	return ids, nil
}

// Remove deletes a message and its envelope (envelope first, so a crash
// never leaves an envelope without its message).
func (q *Queue) Remove(id string) error {
	if err := os.Remove(q.EnvPath(id)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("queue: %w", err)
	}
	os.Remove(q.MsgPath(id))
	return durable.SyncDir(filepath.Join(q.Dir, "env"))
}

// Done removes a delivered message without waiting for the directory to
// be durable: if the removal is lost in a crash, the message is delivered
// once more, which RFC 5321 6.1 prefers to losing it.
func (q *Queue) Done(id string) error {
	if err := os.Remove(q.EnvPath(id)); err != nil && !os.IsNotExist(err) {
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

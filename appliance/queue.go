package appliance

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"concierge/smtpd/dsn"
	"concierge/smtpd/queue"
)

// Queue is the admin API of the outbound queue: list, show, flush, retry
// and delete. It takes and returns plain values (JSON-ready), so that a
// control socket can serve it unchanged; the CLI is its first client.
//
// In the server (Env.QueueAPI) changes go to the delivery runner
// directly. Opened by another process (OpenQueue), changes reach a
// running server as request files in DATA/queue/req/, which its runner
// carries out within queue.RequestPoll with the same methods; with no
// server running they are made on the files, and the next start acts on
// them. Every ID is checked with queue.ValidID before it names a file.
type Queue struct {
	dir     string
	dataDir string
	runner  *queue.Runner // nil outside the server
}

// OpenQueue returns the API over the queue of a data directory.
func OpenQueue(dataDir string) *Queue {
	return &Queue{dir: filepath.Join(dataDir, "queue"), dataDir: dataDir}
}

// QueuedMessage is a queued message as the API shows it.
type QueuedMessage struct {
	ID          string            `json:"id"`
	From        string            `json:"from"`
	Size        int64             `json:"size"`
	Received    time.Time         `json:"received"`
	NextAttempt time.Time         `json:"next_attempt"`
	User        string            `json:"user,omitempty"`
	Warned      bool              `json:"warned,omitempty"`
	Recipients  []QueuedRecipient `json:"recipients"`
	// Headers of the message (Show only), with LF line ends.
	Headers string `json:"headers,omitempty"`
}

// QueuedRecipient is one recipient of a queued message.
type QueuedRecipient struct {
	Addr      string    `json:"addr"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	LastTry   time.Time `json:"last_try,omitzero"`
	RemoteMTA string    `json:"remote_mta,omitempty"`
}

// QueueChange says what a change did.
type QueueChange struct {
	// Server is true when a running server was asked to make it.
	Server bool `json:"server"`
	// Messages counts the messages changed here (no server running).
	Messages int `json:"messages"`
}

// ErrNoMessage is returned for an ID that is not queued.
var ErrNoMessage = errors.New("no such queued message")

func (q *Queue) files() *queue.Queue { return &queue.Queue{Dir: q.dir} } // not queue.Open: it clears tmp/

func view(env *queue.Envelope) QueuedMessage {
	m := QueuedMessage{ID: env.ID, From: env.From, Size: env.Size, Received: env.Received, NextAttempt: env.NextAttempt,
		User: env.User, Warned: env.Warned}
	for _, rc := range env.Recipients {
		m.Recipients = append(m.Recipients, QueuedRecipient{Addr: rc.Addr, State: string(rc.State), Attempts: rc.Attempts,
			LastError: rc.LastError, LastTry: rc.LastTry, RemoteMTA: rc.RemoteMTA})
	}
	return m
}

func (q *Queue) envelopes() ([]*queue.Envelope, error) {
	fq := q.files()
	ids, err := fq.List()
	if err != nil {
		return nil, err
	}
	var envs []*queue.Envelope
	for _, id := range ids {
		if env, err := fq.Load(id); err == nil {
			envs = append(envs, env)
		}
	}
	slices.SortFunc(envs, func(a, b *queue.Envelope) int { return a.Received.Compare(b.Received) })
	return envs, nil
}

// List returns every queued message, oldest first.
func (q *Queue) List() ([]QueuedMessage, error) {
	envs, err := q.envelopes()
	if err != nil {
		return nil, err
	}
	out := make([]QueuedMessage, 0, len(envs))
	for _, env := range envs {
		out = append(out, view(env))
	}
	return out, nil
}

// load checks an ID and reads its envelope.
func (q *Queue) load(id string) (*queue.Envelope, error) {
	if err := queue.ValidID(id); err != nil {
		return nil, err
	}
	env, err := q.files().Load(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoMessage, id)
	}
	return env, err
}

// Show returns one message with its headers.
func (q *Queue) Show(id string) (*QueuedMessage, error) {
	env, err := q.load(id)
	if err != nil {
		return nil, err
	}
	m := view(env)
	f, err := os.Open(q.files().MsgPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr, _ := dsn.Headers(io.NewSectionReader(f, env.BodyOffset, 1<<62))
	m.Headers = strings.ReplaceAll(string(hdr), "\r\n", "\n")
	return &m, nil
}

// Flush makes every message due now, or those with a recipient at domain.
func (q *Queue) Flush(domain string) (QueueChange, error) {
	domain = strings.ToLower(domain)
	if strings.ContainsAny(domain, " \t\r\n/@") {
		return QueueChange{}, fmt.Errorf("not a domain: %q", domain)
	}
	if q.runner != nil {
		return QueueChange{Server: true, Messages: q.runner.Flush(domain)}, nil
	}
	return q.change(queue.ReqFlush, domain, func(env *queue.Envelope) bool {
		return domain == "" || slices.ContainsFunc(env.Recipients, func(rc queue.Recipient) bool {
			return rc.State == queue.Pending && queue.Domain(rc.Addr) == domain
		})
	})
}

// Retry makes one message due now.
func (q *Queue) Retry(id string) (QueueChange, error) {
	if _, err := q.load(id); err != nil {
		return QueueChange{}, err
	}
	if q.runner != nil {
		return QueueChange{Server: true, Messages: 1}, q.runner.Retry(id)
	}
	return q.change(queue.ReqRetry, id, func(env *queue.Envelope) bool { return env.ID == id })
}

// Delete removes a message without telling its sender.
func (q *Queue) Delete(id string) (QueueChange, error) {
	if _, err := q.load(id); err != nil {
		return QueueChange{}, err
	}
	if q.runner != nil {
		return QueueChange{Server: true, Messages: 1}, q.runner.Delete(id)
	}
	if sent, err := q.request(queue.ReqDel, id); sent || err != nil {
		return QueueChange{Server: sent}, err
	}
	return QueueChange{Messages: 1}, q.files().Remove(id)
}

// change asks a running server, or marks the matching messages due on
// the files.
func (q *Queue) change(kind, arg string, match func(*queue.Envelope) bool) (QueueChange, error) {
	if sent, err := q.request(kind, arg); sent || err != nil {
		return QueueChange{Server: sent}, err
	}
	envs, err := q.envelopes()
	if err != nil {
		return QueueChange{}, err
	}
	n := 0
	for _, env := range envs {
		if !match(env) {
			continue
		}
		env.NextAttempt = time.Time{}
		if err := q.files().Save(env); err != nil {
			return QueueChange{Messages: n}, err
		}
		n++
	}
	return QueueChange{Messages: n}, nil
}

// request hands a change to the server running on the data directory;
// it reports false when none runs.
func (q *Queue) request(kind, arg string) (bool, error) {
	if !serverRunning(q.dataDir) {
		return false, nil
	}
	return true, q.files().Request(kind, arg)
}

// serverRunning reports whether a server holds the data directory's PID
// file lock.
func serverRunning(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, pidFile))
	if err != nil {
		return false
	}
	defer f.Close()
	// The lock is held while a server runs; taking it here (released at
	// Close) means none does.
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"concierge/smtpd/dsn"
	"concierge/smtpd/queue"
)

// The queue ops. In the server a change goes to the delivery runner,
// which tries the messages at once; with no server running it is made on
// the files, and the next start acts on it. Every ID is checked with
// queue.ValidID before it names a file.

// ErrNoMessage is returned for an ID that is not queued.
var ErrNoMessage = errors.New("no such queued message")

// files is the queue directory (not queue.Open: that clears tmp/, which
// belongs to the server).
func (s *Service) files() *queue.Queue {
	return &queue.Queue{Dir: filepath.Join(s.opt.DataDir, "queue")}
}

func (s *Service) runner() QueueRunner {
	if s.opt.Live == nil {
		return nil
	}
	return s.opt.Live.Runner()
}

func view(env *queue.Envelope) QueuedMessage {
	m := QueuedMessage{ID: env.ID, From: env.From, Size: env.Size, Received: env.Received, NextAttempt: env.NextAttempt,
		User: env.User, Warned: env.Warned, Recipients: []QueuedRecipient{}}
	for _, rc := range env.Recipients {
		m.Recipients = append(m.Recipients, QueuedRecipient{Addr: rc.Addr, State: string(rc.State), Attempts: rc.Attempts,
			LastError: rc.LastError, LastTry: rc.LastTry, RemoteMTA: rc.RemoteMTA})
	}
	return m
}

func (s *Service) envelopes() ([]*queue.Envelope, error) {
	fq := s.files()
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

// QueueLength counts the messages in the queue of dataDir.
func QueueLength(dataDir string) int {
	ids, _ := (&queue.Queue{Dir: filepath.Join(dataDir, "queue")}).List()
	return len(ids)
}

func (s *Service) queueList(ctx context.Context, a Args) (any, error) {
	envs, err := s.envelopes()
	if err != nil {
		return nil, err
	}
	out := make([]QueuedMessage, 0, len(envs))
	for _, env := range envs {
		out = append(out, view(env))
	}
	return out, nil
}

// loadQueued checks an ID and reads its envelope.
func (s *Service) loadQueued(id string) (*queue.Envelope, error) {
	if err := queue.ValidID(id); err != nil {
		return nil, err
	}
	env, err := s.files().Load(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoMessage, id)
	}
	return env, err
}

func (s *Service) queueShow(ctx context.Context, a Args) (any, error) {
	id := a["id"]
	env, err := s.loadQueued(id)
	if err != nil {
		return nil, err
	}
	m := view(env)
	f, err := os.Open(s.files().MsgPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr, _ := dsn.Headers(io.NewSectionReader(f, env.BodyOffset, 1<<62))
	m.Headers = strings.ReplaceAll(string(hdr), "\r\n", "\n")
	return m, nil
}

func (s *Service) queueFlush(ctx context.Context, a Args) (any, error) {
	domain := strings.ToLower(a["domain"])
	if strings.ContainsAny(domain, " \t\r\n/@") {
		return nil, invalid("domain", "domain: %q is not a domain", domain)
	}
	if r := s.runner(); r != nil {
		return QueueChange{Live: true, Messages: r.Flush(domain)}, nil
	}
	return s.due(func(env *queue.Envelope) bool {
		return domain == "" || slices.ContainsFunc(env.Recipients, func(rc queue.Recipient) bool {
			return rc.State == queue.Pending && queue.Domain(rc.Addr) == domain
		})
	})
}

func (s *Service) queueRetry(ctx context.Context, a Args) (any, error) {
	id := a["id"]
	if _, err := s.loadQueued(id); err != nil {
		return nil, err
	}
	if r := s.runner(); r != nil {
		return QueueChange{Live: true, Messages: 1}, r.Retry(id)
	}
	return s.due(func(env *queue.Envelope) bool { return env.ID == id })
}

func (s *Service) queueDel(ctx context.Context, a Args) (any, error) {
	id := a["id"]
	if _, err := s.loadQueued(id); err != nil {
		return nil, err
	}
	if r := s.runner(); r != nil {
		return QueueChange{Live: true, Messages: 1}, r.Delete(id)
	}
	return QueueChange{Messages: 1}, s.files().Remove(id)
}

// due makes the matching messages due now, on the files.
func (s *Service) due(match func(*queue.Envelope) bool) (QueueChange, error) {
	envs, err := s.envelopes()
	if err != nil {
		return QueueChange{}, err
	}
	n := 0
	for _, env := range envs {
		if !match(env) {
			continue
		}
		env.NextAttempt = time.Time{}
		if err := s.files().Save(env); err != nil {
			return QueueChange{Messages: n}, err
		}
		n++
	}
	return QueueChange{Messages: n}, nil
}

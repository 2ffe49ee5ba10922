// Package store makes accepted mail durable: it writes each message once
// into a spool file and links it into every recipient's Maildir, into the
// outbound queue and into the drop directory, then acknowledges it only
// when all of that is on disk.
//
// Concurrent sessions share the cost of making data durable (group commit):
// a committer takes every message finished since its last round, makes
// their spool files durable with one syncfs(2) and links them into place;
// the next round's syncfs makes the links durable, and only then are the
// messages acknowledged. Maildir layout: https://cr.yp.to/proto/maildir.html.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concierge/internal/durable"
	"concierge/smtpd/queue"
)

// ErrClosed is returned by Deliver after Close.
var ErrClosed = errors.New("store: closed")

// Store delivers messages under one data directory. Every directory it
// writes to must be on one file system with the spool (links), except the
// drop directory, which is copied to.
type Store struct {
	spool  string // spool/tmp: messages being received
	host   string // for unique names
	Queue  *queue.Queue
	Log    *slog.Logger
	reqs   chan *commit
	done   chan struct{}
	wg     sync.WaitGroup
	seq    atomic.Uint64
	mu     sync.Mutex
	ready  map[string]bool // Maildirs known to exist
	closed atomic.Bool

	// Rounds and Messages count commit rounds and the messages in them.
	Rounds, Messages atomic.Uint64
}

// Open prepares the spool under dataDir, removes messages that were being
// received when the server stopped (never acknowledged), and starts the
// committer.
func Open(dataDir, hostname string, q *queue.Queue, log *slog.Logger) (*Store, error) {
	spool := filepath.Join(dataDir, "spool", "tmp")
	if err := durable.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(spool, "*"))
	for _, f := range old {
		os.Remove(f)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		spool: spool, host: safeHost(hostname), Queue: q, Log: log,
		reqs: make(chan *commit, 1024), done: make(chan struct{}), ready: map[string]bool{},
	}
	s.wg.Add(1)
	go s.committer()
	return s, nil
}

// Close stops the committer after the current round.
func (s *Store) Close() {
	if s.closed.CompareAndSwap(false, true) {
		close(s.done)
		s.wg.Wait()
	}
}

func safeHost(h string) string {
	h = strings.ReplaceAll(h, "/", `\057`)
	return strings.ReplaceAll(h, ":", `\072`)
}

// UniqueName returns a new Maildir unique name: seconds.MmicrosPpidQn.host.
func (s *Store) UniqueName() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), s.seq.Add(1), s.host)
}

// Delivery says where one message goes.
type Delivery struct {
	// Maildirs are the recipients' Maildir directories.
	Maildirs []string
	// Queue is the envelope for remote recipients, or nil. Its ID is set
	// by Deliver.
	Queue *queue.Envelope
	// DropDir, when set, gets a copy as <unique>.eml.
	DropDir string
}

// Message is a message being received into the spool.
type Message struct {
	s    *Store
	f    *os.File
	path string
	name string
	n    int64
}

// Create starts a new message in the spool.
func (s *Store) Create() (*Message, error) {
	name := s.UniqueName()
	path := filepath.Join(s.spool, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Message{s: s, f: f, path: path, name: name}, nil
}

// Name is the message's unique name (also its queue ID).
func (m *Message) Name() string { return m.name }

// Write appends to the message.
func (m *Message) Write(p []byte) (int, error) {
	n, err := m.f.Write(p)
	m.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (m *Message) Size() int64 { return m.n }

// Abort discards the message.
func (m *Message) Abort() {
	m.f.Close()
	os.Remove(m.path)
}

// Commit makes the message durable at every destination of d and returns
// only when it is (or with an error, when nothing was delivered).
func (m *Message) Commit(ctx context.Context, d Delivery) error {
	defer os.Remove(m.path)
	if err := m.f.Close(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	c := &commit{msg: m, done: make(chan error, 1)}
	for _, md := range d.Maildirs {
		if err := m.s.ensureMaildir(md); err != nil {
			return err
		}
		c.links = append(c.links, filepath.Join(md, "new", m.name))
	}
	if d.Queue != nil {
		d.Queue.ID = m.name
		d.Queue.Size = m.n - d.Queue.BodyOffset
		tmp, err := m.s.Queue.Stage(d.Queue)
		if err != nil {
			return err
		}
		c.links = append(c.links, m.s.Queue.MsgPath(m.name))
		c.renames = append(c.renames, [2]string{tmp, m.s.Queue.EnvPath(m.name)})
	}
	if d.DropDir != "" {
		tmp, err := m.copyTo(d.DropDir)
		if err != nil {
			return err
		}
		c.renames = append(c.renames, [2]string{tmp, filepath.Join(d.DropDir, m.name+".eml")})
		c.syncDirs = append(c.syncDirs, d.DropDir)
	}
	if m.s.closed.Load() {
		return ErrClosed
	}
	select {
	case m.s.reqs <- c:
	case <-m.s.done:
		return ErrClosed
	}
	// The round runs to its end even if ctx ends: the client's connection
	// may be gone, but a half-made delivery must not be left behind.
	err := <-c.done
	if err == nil && d.Queue != nil {
		m.s.Queue.Kick()
	}
	return err
}

// copyTo writes a durable copy of the spool file into dir (which may be on
// another file system) under a temporary name.
func (m *Message) copyTo(dir string) (string, error) {
	src, err := os.Open(m.path)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	defer src.Close()
	// The copy is readable by the box's own user only, and made as a new
	// file: O_EXCL neither follows a planted link nor writes into a file
	// that someone else opened first.
	tmp := filepath.Join(dir, "."+m.name+".tmp")
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("store: drop dir: %w", err)
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("store: drop dir: %w", err)
	}
	return tmp, nil
}

func (s *Store) ensureMaildir(dir string) error {
	s.mu.Lock()
	ok := s.ready[dir]
	s.mu.Unlock()
	if ok {
		return nil
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := durable.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	s.mu.Lock()
	s.ready[dir] = true
	s.mu.Unlock()
	return nil
}

type commit struct {
	msg      *Message
	links    []string    // hard links to make from the spool file
	renames  [][2]string // files to move into place
	syncDirs []string    // directories outside the spool file system to fsync
	done     chan error
}

// maxRound bounds the messages of one commit round.
const maxRound = 256

// committer runs commit rounds. Each round is one syncfs(2) that does two
// jobs at once: it makes durable the links placed in the previous round
// (whose messages are then acknowledged) and the spool files of the
// messages that arrived since (which are then linked into place, to be
// acknowledged after the next round). Under load this is one syncfs per
// round, however many messages the rounds hold.
func (s *Store) committer() {
	defer s.wg.Done()
	var placed []*commit // linked into place, waiting for the next syncfs
	for {
		var round []*commit
		if len(placed) == 0 {
			select {
			case c := <-s.reqs:
				round = append(round, c)
			case <-s.done:
				s.drain()
				return
			}
		}
	more:
		for len(round) < maxRound {
			select {
			case c := <-s.reqs:
				round = append(round, c)
			default:
				break more
			}
		}
		s.Rounds.Add(1)
		s.Messages.Add(uint64(len(round)))
		err := s.syncfs()
		s.finish(placed, err)
		placed = placed[:0]
		for _, c := range round {
			switch {
			case err != nil:
				c.done <- err
			default:
				if perr := c.place(); perr != nil {
					c.done <- perr
					continue
				}
				placed = append(placed, c)
			}
		}
	}
}

// finish acknowledges placed messages once their links are durable (err
// is the result of the syncfs that covered them); on error their links
// are undone and the sender is told to try again.
func (s *Store) finish(placed []*commit, err error) {
	dirs := map[string]bool{}
	for _, c := range placed {
		for _, d := range c.syncDirs {
			dirs[d] = true
		}
	}
	for d := range dirs {
		if err == nil {
			err = durable.SyncDir(d)
		}
	}
	for _, c := range placed {
		if err != nil {
			c.undo()
		}
		c.done <- err
	}
}

// drain fails requests that arrived after Close.
func (s *Store) drain() {
	for {
		select {
		case c := <-s.reqs:
			c.done <- ErrClosed
		default:
			return
		}
	}
}

func (c *commit) place() error {
	var made []string
	undo := func() {
		for _, p := range made {
			os.Remove(p)
		}
	}
	for _, l := range c.links {
		if err := os.Link(c.msg.path, l); err != nil {
			undo()
			return fmt.Errorf("store: %w", err)
		}
		made = append(made, l)
	}
	for _, r := range c.renames {
		if err := os.Rename(r[0], r[1]); err != nil {
			undo()
			return fmt.Errorf("store: %w", err)
		}
		made = append(made, r[1])
	}
	return nil
}

func (c *commit) undo() {
	for _, l := range c.links {
		os.Remove(l)
	}
	for _, r := range c.renames {
		os.Remove(r[1])
	}
}

// syncfs flushes the spool's file system: file data, inodes and directory
// entries written before the call are durable when it returns.
func (s *Store) syncfs() error {
	fd, err := unix.Open(s.spool, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("store: syncfs: %w", err)
	}
	return nil
}

// String describes the store for logs.
func (s *Store) String() string {
	return "store(" + s.spool + ", rounds=" + strconv.FormatUint(s.Rounds.Load(), 10) + ")"
}

// Package maildir serves one user's Maildir as a POP3 maildrop (RFC 1939
// section 8 leaves the maildrop format to the server): it locks the
// maildrop for one session, lists the messages in new/ and cur/ with their
// sizes as sent on the wire (CRLF line endings) and stable unique IDs,
// streams them with CRLF line endings, and at the end of the session
// deletes the messages the client deleted and moves the retrieved ones
// from new/ to cur/ with the "seen" flag.
//
// Maildir layout (https://cr.yp.to/proto/maildir.html): tmp/, new/ and
// cur/; a file in cur/ is named "<unique>:2,<flags>". The SMTP side stores
// messages with CRLF line endings exactly as received, so the POP3 size is
// the file size; files that other tools drop in with bare LF line endings
// are converted on output and counted accordingly.
//
// The package is a leaf: it uses the standard library only.
package maildir

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrInUse is returned by Lock when another session, in this process or
// another one, holds the maildrop.
var ErrInUse = errors.New("maildir: maildrop in use")

// Files the package keeps at the top of a Maildir. Maildir readers look
// only at tmp/, new/, cur/ and at sub-directories for folders, so plain
// dot files are left alone by them.
const (
	lockName    = ".concierge-pop3.lock"
	journalName = ".concierge-pop3.delete"
)

// MaxUIDLen is the longest unique ID RFC 1939 section 7 (UIDL) allows.
const MaxUIDLen = 70

// message is one message of a locked maildrop.
type message struct {
	uid   string
	size  int64  // octets with CRLF line endings
	sub   string // "new" or "cur"
	name  string // file name within sub
	clean bool   // the file already has CRLF endings throughout: sent as is
	mtime int64
}

// Maildrop is a locked Maildir. It is used by one session at a time.
type Maildrop struct {
	dir  string
	msgs []message
	lock *os.File
	once sync.Once
}

// held is the set of Maildirs locked in this process. flock(2) would also
// refuse a second lock from this process, but only through a second open
// file; the map makes the rule explicit and cheap.
var held = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// Lock locks the Maildir at dir (created if missing) for one session and
// lists its messages. Mail that arrives later is seen by the next session.
// A deletion interrupted by a crash is completed first (see Update).
func Lock(dir string) (*Maildrop, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	held.Lock()
	if held.m[dir] {
		held.Unlock()
		return nil, ErrInUse
	}
	held.m[dir] = true
	held.Unlock()
	unhold := func() {
		held.Lock()
		delete(held.m, dir)
		held.Unlock()
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			unhold()
			return nil, fmt.Errorf("maildir: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		unhold()
		return nil, fmt.Errorf("maildir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		unhold()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrInUse
		}
		return nil, fmt.Errorf("maildir: lock: %w", err)
	}
	m := &Maildrop{dir: dir, lock: f}
	if err := m.recover(); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.list(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close releases the lock without changing anything.
func (m *Maildrop) Close() error {
	var err error
	m.once.Do(func() {
		err = m.lock.Close() // closing the file releases the flock
		held.Lock()
		delete(held.m, m.dir)
		held.Unlock()
	})
	return err
}

// Len is the number of messages.
func (m *Maildrop) Len() int { return len(m.msgs) }

// Info returns the unique ID and the size in octets (CRLF line endings)
// of message i, counted from 0.
func (m *Maildrop) Info(i int) (uid string, size int64) {
	return m.msgs[i].uid, m.msgs[i].size
}

// UniqueName is the part of a Maildir file name before the info (":2,").
func UniqueName(file string) string {
	u, _, _ := strings.Cut(file, ":")
	return u
}

// UID derives a POP3 unique ID from a Maildir file name: the unique name
// itself when it is 1 to 70 printable ASCII characters (RFC 1939 section
// 7), else a hash of it. It does not change when the file moves from new/
// to cur/ or gets flags, so it is stable across sessions and restarts.
func UID(file string) string {
	u := UniqueName(file)
	ok := len(u) >= 1 && len(u) <= MaxUIDLen
	for i := 0; ok && i < len(u); i++ {
		ok = u[i] >= 0x21 && u[i] <= 0x7e
	}
	if ok {
		return u
	}
	h := sha256.Sum256([]byte(u))
	return hex.EncodeToString(h[:20])
}

// ioWorkers is how many files are sized or removed at once: a listing
// or a deletion of thousands of files is bound by system calls, which
// overlap well.
const ioWorkers = 4

func (m *Maildrop) list() error {
	seen := map[string]bool{}
	type entry struct {
		e   os.DirEntry
		sub string
		uid string
	}
	var ents []entry
	for _, sub := range []string{"cur", "new"} {
		des, err := os.ReadDir(filepath.Join(m.dir, sub))
		if err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
		for _, e := range des {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
				continue
			}
			uid := UID(name)
			if seen[uid] {
				continue // the same message in new/ and cur/: keep one
			}
			seen[uid] = true
			ents = append(ents, entry{e, sub, uid})
		}
	}
	msgs := make([]message, len(ents))
	errs := make([]error, len(ents))
	forEach(len(ents), func(i int) {
		en := ents[i]
		fi, err := en.e.Info()
		if err != nil {
			errs[i] = fs.ErrNotExist // moved or deleted meanwhile
			return
		}
		size, clean, err := sizeOf(filepath.Join(m.dir, en.sub, en.e.Name()), fi)
		if err != nil {
			errs[i] = err
			return
		}
		msgs[i] = message{uid: en.uid, size: size, sub: en.sub, name: en.e.Name(), clean: clean, mtime: fi.ModTime().UnixNano()}
	})
	m.msgs = msgs[:0]
	for i := range msgs {
		switch {
		case errs[i] == nil:
			m.msgs = append(m.msgs, msgs[i])
		case errors.Is(errs[i], fs.ErrNotExist):
		default:
			return errs[i]
		}
	}
	// Oldest first; the name breaks ties so the order is the same in
	// every session.
	slices.SortFunc(m.msgs, func(a, b message) int {
		if a.mtime != b.mtime {
			if a.mtime < b.mtime {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return nil
}

// Open returns message i with CRLF line endings, ending in CRLF; exactly
// the size Info reported is read from it.
func (m *Maildrop) Open(i int) (io.ReadCloser, error) {
	msg := &m.msgs[i]
	f, err := os.Open(filepath.Join(m.dir, msg.sub, msg.name))
	if errors.Is(err, fs.ErrNotExist) {
		// Another Maildir reader may have moved it to cur/ or
		// changed its flags.
		if name, ok := m.find(msg.uid); ok {
			msg.sub, msg.name = "cur", name
			f, err = os.Open(filepath.Join(m.dir, "cur", name))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	if msg.clean {
		// The size is known: stop there, without one more read to
		// learn about the end of the file.
		return limitedFile{io.LimitReader(f, msg.size), f}, nil
	}
	return &crlfReader{f: f, r: bufio.NewReaderSize(f, 32<<10)}, nil
}

type limitedFile struct {
	io.Reader
	f *os.File
}

func (l limitedFile) Close() error { return l.f.Close() }

// find looks for the file of uid in cur/.
func (m *Maildrop) find(uid string) (string, bool) {
	ents, _ := os.ReadDir(filepath.Join(m.dir, "cur"))
	for _, e := range ents {
		if UID(e.Name()) == uid {
			return e.Name(), true
		}
	}
	return "", false
}

// Update ends a session (the POP3 UPDATE state, RFC 1939 section 6): it
// deletes the messages in deleted and marks the retrieved messages in
// seen (indices from 0) by moving them to cur/ with the S flag. It does
// not release the lock.
//
// Deletion is all or nothing as far as the file system allows: the list
// of unique names to delete is first written to a journal file and made
// durable; from then on the deletion is completed, if the process dies
// half-way, by the next Lock of this Maildir. Before the journal is
// durable, nothing is deleted. Unlinks are made durable by an fsync of
// new/ and cur/ before the journal is removed; a journal that survives a
// crash after that is replayed harmlessly. An error means some
// messages may remain; they stay listed in the journal and are removed
// at the next Lock.
//
// Marking as seen is best effort (a failure only leaves a message in
// new/) and does not make Update fail.
func (m *Maildrop) Update(deleted, seen []int) error {
	del := map[int]bool{}
	for _, i := range deleted {
		if i >= 0 && i < len(m.msgs) {
			del[i] = true
		}
	}
	var err error
	if len(del) > 0 {
		var b strings.Builder
		for i := range del {
			b.WriteString(m.msgs[i].uid)
			b.WriteByte('\n')
		}
		if err = writeDurable(m.dir, journalName, []byte(b.String())); err == nil {
			idx := make([]int, 0, len(del))
			for i := range del {
				idx = append(idx, i)
			}
			failed := make([]error, len(idx))
			forEach(len(idx), func(k int) {
				msg := m.msgs[idx[k]]
				e := os.Remove(filepath.Join(m.dir, msg.sub, msg.name))
				if errors.Is(e, fs.ErrNotExist) {
					if name, ok := m.find(msg.uid); ok {
						e = os.Remove(filepath.Join(m.dir, "cur", name))
					} else {
						e = nil // gone already
					}
				}
				failed[k] = e
			})
			syncs := make([]error, 2)
			forEach(2, func(i int) { syncs[i] = syncDir(filepath.Join(m.dir, []string{"new", "cur"}[i])) })
			if err = errors.Join(append(failed, syncs...)...); err == nil {
				// Replaying a finished journal deletes nothing (unique
				// names are never reused), so its removal need not be
				// durable.
				err = os.Remove(filepath.Join(m.dir, journalName))
			}
		}
		if err != nil {
			err = fmt.Errorf("maildir: delete: %w", err)
		}
	}
	moved := false
	for _, i := range seen {
		if i < 0 || i >= len(m.msgs) || del[i] {
			continue
		}
		msg := &m.msgs[i]
		name := withSeen(msg.name)
		if msg.sub == "cur" && name == msg.name {
			continue
		}
		if os.Rename(filepath.Join(m.dir, msg.sub, msg.name), filepath.Join(m.dir, "cur", name)) == nil {
			msg.sub, msg.name = "cur", name
			moved = true
		}
	}
	if moved {
		syncDir(filepath.Join(m.dir, "new"))
		syncDir(filepath.Join(m.dir, "cur"))
	}
	return err
}

// forEach runs f(0) ... f(n-1) on up to ioWorkers goroutines.
func forEach(n int, f func(i int)) {
	workers := min(ioWorkers, n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// withSeen returns the cur/ name of a message with the S flag added; flags
// stay in ASCII order (Maildir "info" semantics "2,").
func withSeen(name string) string {
	u, info, ok := strings.Cut(name, ":")
	if !ok || !strings.HasPrefix(info, "2,") {
		return u + ":2,S"
	}
	flags := []byte(info[2:])
	if bytes.IndexByte(flags, 'S') >= 0 {
		return name
	}
	flags = append(flags, 'S')
	slices.Sort(flags)
	return u + ":2," + string(flags)
}

// recover completes a deletion that a crash interrupted.
func (m *Maildrop) recover() error {
	data, err := os.ReadFile(filepath.Join(m.dir, journalName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maildir: journal: %w", err)
	}
	uids := map[string]bool{}
	for _, u := range strings.Split(string(data), "\n") {
		if u != "" {
			uids[u] = true
		}
	}
	var failed []error
	for _, sub := range []string{"new", "cur"} {
		d := filepath.Join(m.dir, sub)
		ents, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
		for _, e := range ents {
			if uids[UID(e.Name())] {
				if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					failed = append(failed, err)
				}
			}
		}
		failed = append(failed, syncDir(d))
	}
	if err := errors.Join(failed...); err != nil {
		return fmt.Errorf("maildir: completing a deletion: %w", err)
	}
	return removeDurable(m.dir, journalName)
}

// writeDurable writes dir/name through a temporary file, fsync and rename,
// then fsyncs dir.
func writeDurable(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if e := f.Sync(); err == nil {
		err = e
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func removeDurable(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}

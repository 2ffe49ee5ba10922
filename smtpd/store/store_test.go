package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"concierge/smtpd/queue"
)

func open(t testing.TB) (*Store, string) {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, "mx.example.test", q, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, dir
}

func TestCommitEverywhere(t *testing.T) {
	s, dir := open(t)
	drop := t.TempDir()
	m, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(m, "Return-Path: <a@b>\r\nSubject: x\r\n\r\nhello\r\n")
	env := &queue.Envelope{From: "a@b", Recipients: []queue.Recipient{{Addr: "r@remote.test", State: queue.Pending}}, BodyOffset: 20}
	mds := []string{filepath.Join(dir, "mail", "bob"), filepath.Join(dir, "mail", "alice")}
	if err := m.Commit(context.Background(), Delivery{Maildirs: mds, Queue: env, DropDir: drop}); err != nil {
		t.Fatal(err)
	}
	for _, md := range mds {
		files, _ := filepath.Glob(filepath.Join(md, "new", "*"))
		if len(files) != 1 {
			t.Fatalf("%s: %d files", md, len(files))
		}
		for _, sub := range []string{"tmp", "cur"} {
			if _, err := os.Stat(filepath.Join(md, sub)); err != nil {
				t.Errorf("maildir lacks %s", sub)
			}
		}
	}
	got, err := s.Queue.Load(m.Name())
	if err != nil || got.Recipients[0].Addr != "r@remote.test" || got.Size != m.Size()-20 {
		t.Fatalf("queue envelope: %+v %v", got, err)
	}
	if b, _ := os.ReadFile(s.Queue.MsgPath(m.Name())); string(b) != "Return-Path: <a@b>\r\nSubject: x\r\n\r\nhello\r\n" {
		t.Errorf("queued message: %q", b)
	}
	if _, err := os.Stat(filepath.Join(drop, m.Name()+".eml")); err != nil {
		t.Error(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "spool", "tmp", "*")); len(left) != 0 {
		t.Errorf("spool not cleaned: %v", left)
	}
}

func TestFailedCommitLeavesNothing(t *testing.T) {
	s, dir := open(t)
	good := filepath.Join(dir, "mail", "bob")
	bad := filepath.Join(dir, "mail", "carol")
	if err := os.MkdirAll(filepath.Join(bad, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(bad, "cur"), 0o700)
	os.WriteFile(filepath.Join(bad, "new"), nil, 0o600) // "new" is a file: linking fails
	m, _ := s.Create()
	fmt.Fprint(m, "Subject: x\r\n\r\n")
	if err := m.Commit(context.Background(), Delivery{Maildirs: []string{good, bad}}); err == nil {
		t.Fatal("commit into a broken Maildir succeeded")
	}
	if files, _ := filepath.Glob(filepath.Join(good, "new", "*")); len(files) != 0 {
		t.Errorf("a failed delivery left %v", files)
	}
}

// BenchmarkConcurrentCommit measures group commit with 20 writers.
func BenchmarkConcurrentCommit(b *testing.B) {
	s, dir := open(b)
	md := filepath.Join(dir, "mail", "bob")
	body := make([]byte, 2048)
	b.SetParallelism(10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m, err := s.Create()
			if err != nil {
				b.Error(err)
				return
			}
			m.Write(body)
			if err := m.Commit(context.Background(), Delivery{Maildirs: []string{md}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.Messages.Load())/float64(max(1, s.Rounds.Load())), "msgs/round")
}

// Drop-directory copies are private to the box (0600) and made with
// O_EXCL: a link planted under the temporary name is not followed.
func TestDropDirCopyIsPrivate(t *testing.T) {
	s, _ := open(t)
	drop := t.TempDir()
	m, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(m, "Subject: x\r\n\r\nsecret\r\n")
	if err := m.Commit(context.Background(), Delivery{DropDir: drop}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(drop, m.Name()+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("drop-directory copy has mode %v, want 0600", mode)
	}

	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err = s.Create()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(m, "Subject: y\r\n\r\noverwrite\r\n")
	if err := os.Symlink(victim, filepath.Join(drop, "."+m.Name()+".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(context.Background(), Delivery{DropDir: drop}); err == nil {
		t.Error("copy written through a planted link")
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("the link's target was overwritten: %q", b)
	}
}

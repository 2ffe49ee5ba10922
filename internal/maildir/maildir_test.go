package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// deliver writes a message the way the SMTP store does (tmp, then new).
func deliver(t testing.TB, dir, name, body string, age time.Duration) {
	t.Helper()
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "new", name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(-age)
	os.Chtimes(p, mt, mt)
}

func readAll(t *testing.T, m *Maildrop, i int) string {
	t.Helper()
	rc, err := m.Open(i)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestListSizesAndOrder(t *testing.T) {
	dir := t.TempDir()
	deliver(t, dir, "1700000000.M1P1Q1.box", "Subject: a\r\n\r\nhello\r\n", 3*time.Hour)
	deliver(t, dir, "1700000001.M1P1Q2.box", "Subject: b\n\nbare LF\n", 2*time.Hour)
	deliver(t, dir, "1700000002.M1P1Q3.box", "Subject: c\r\n\r\nno final newline", time.Hour)
	os.WriteFile(filepath.Join(dir, "new", ".hidden"), []byte("x"), 0o600)
	m, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := []struct{ uid, body string }{
		{"1700000000.M1P1Q1.box", "Subject: a\r\n\r\nhello\r\n"},
		{"1700000001.M1P1Q2.box", "Subject: b\r\n\r\nbare LF\r\n"},
		{"1700000002.M1P1Q3.box", "Subject: c\r\n\r\nno final newline\r\n"},
	}
	if m.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(want))
	}
	for i, w := range want {
		uid, size := m.Info(i)
		got := readAll(t, m, i)
		if uid != w.uid || got != w.body || size != int64(len(w.body)) {
			t.Errorf("message %d: uid %q size %d body %q; want %q %d %q", i, uid, size, got, w.uid, len(w.body), w.body)
		}
	}
}

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	m, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Lock in this process: %v, want ErrInUse", err)
	}
	if _, err := Lock(dir + "/./"); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Lock by another spelling: %v, want ErrInUse", err)
	}
	// Another process sees the lock too (flock(1) from util-linux).
	if _, err := exec.LookPath("flock"); err != nil {
		t.Fatal("flock(1) is needed: ", err)
	}
	if err := exec.Command("flock", "-n", filepath.Join(dir, lockName), "true").Run(); err == nil {
		t.Fatal("another process could take the lock")
	}
	m.Close()
	m.Close() // twice is harmless
	if err := exec.Command("flock", "-n", filepath.Join(dir, lockName), "true").Run(); err != nil {
		t.Fatalf("lock not released for other processes: %v", err)
	}
	// And a lock held by another process keeps this one out.
	cmd := exec.Command("flock", "-n", filepath.Join(dir, lockName), "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m2, err := Lock(dir)
		if errors.Is(err, ErrInUse) {
			break
		}
		if err == nil {
			m2.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("lock held by another process was not seen")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUpdateDeletesAndMarksSeen(t *testing.T) {
	dir := t.TempDir()
	for i := range 4 {
		deliver(t, dir, fmt.Sprintf("17000000%02d.M1P1Q%d.box", i, i), fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i), time.Duration(10-i)*time.Minute)
	}
	// One message was seen by another reader already and has a flag.
	os.Rename(filepath.Join(dir, "new", "1700000003.M1P1Q3.box"), filepath.Join(dir, "cur", "1700000003.M1P1Q3.box:2,F"))
	m, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for i := range m.Len() {
		u, _ := m.Info(i)
		uids = append(uids, u)
	}
	if err := m.Update([]int{0, 2}, []int{0, 1, 3}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	names := func(sub string) []string {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got := names("new"); len(got) != 0 {
		t.Errorf("new/ = %v, want empty", got)
	}
	want := []string{"1700000001.M1P1Q1.box:2,S", "1700000003.M1P1Q3.box:2,FS"}
	if got := names("cur"); !slices.Equal(got, want) {
		t.Errorf("cur/ = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, journalName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal left behind: %v", err)
	}
	// The UIDs of the remaining messages did not change.
	m, err = Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var after []string
	for i := range m.Len() {
		u, _ := m.Info(i)
		after = append(after, u)
	}
	if !slices.Equal(after, []string{uids[1], uids[3]}) {
		t.Errorf("UIDs after = %v, want %v", after, []string{uids[1], uids[3]})
	}
}

func TestCloseWithoutUpdateChangesNothing(t *testing.T) {
	dir := t.TempDir()
	deliver(t, dir, "1.a.box", "x\r\n", 0)
	m, _ := Lock(dir)
	readAll(t, m, 0)
	m.Close()
	if _, err := os.Stat(filepath.Join(dir, "new", "1.a.box")); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedDeletionIsCompleted(t *testing.T) {
	dir := t.TempDir()
	deliver(t, dir, "1.a.box", "a\r\n", 3*time.Minute)
	deliver(t, dir, "2.b.box", "b\r\n", 2*time.Minute)
	deliver(t, dir, "3.c.box", "c\r\n", time.Minute)
	os.Rename(filepath.Join(dir, "new", "2.b.box"), filepath.Join(dir, "cur", "2.b.box:2,S"))
	// A session decided to delete a and b and died after the journal
	// was written and a was removed.
	os.WriteFile(filepath.Join(dir, journalName), []byte("1.a.box\n2.b.box\n"), 0o600)
	os.Remove(filepath.Join(dir, "new", "1.a.box"))
	m, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1", m.Len())
	}
	if u, _ := m.Info(0); u != "3.c.box" {
		t.Fatalf("left %q, want 3.c.box", u)
	}
	if _, err := os.Stat(filepath.Join(dir, journalName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal left behind: %v", err)
	}
}

func TestOpenFollowsMoveToCur(t *testing.T) {
	dir := t.TempDir()
	deliver(t, dir, "1.a.box", "a\r\n", 0)
	m, _ := Lock(dir)
	defer m.Close()
	os.Rename(filepath.Join(dir, "new", "1.a.box"), filepath.Join(dir, "cur", "1.a.box:2,S"))
	if got := readAll(t, m, 0); got != "a\r\n" {
		t.Fatalf("got %q", got)
	}
	if err := m.Update([]int{0}, nil); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "cur")); len(ents) != 0 {
		t.Fatalf("cur/ not empty: %v", ents)
	}
}

func TestUID(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"1700000000.M1P2Q3.mail.example.test", "1700000000.M1P2Q3.mail.example.test"},
		{"1700000000.M1P2Q3.mail.example.test:2,S", "1700000000.M1P2Q3.mail.example.test"},
		{"abc:2,", "abc"},
	} {
		if got := UID(c.in); got != c.want {
			t.Errorf("UID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := strings.Repeat("x", 71)
	for _, in := range []string{long, "has space", "caf\xc3\xa9", ""} {
		u := UID(in)
		if len(u) != 40 || u != UID(in+":2,S") {
			t.Errorf("UID(%q) = %q: want a 40-char hash that ignores the info", in, u)
		}
	}
	if UID(long) == UID(long+"y") {
		t.Error("different names share a UID")
	}
}

func TestWithSeen(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"a", "a:2,S"}, {"a:2,", "a:2,S"}, {"a:2,S", "a:2,S"}, {"a:2,FT", "a:2,FST"}, {"a:1,x", "a:2,S"},
	} {
		if got := withSeen(c.in); got != c.want {
			t.Errorf("withSeen(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// canonical is the reference definition of the canonical form.
func canonical(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

func checkCanonical(t *testing.T, data []byte) {
	want := canonical(data)
	size, clean := CanonicalSize(data)
	if size != int64(len(want)) {
		t.Fatalf("CanonicalSize(%q) = %d, want %d", data, size, len(want))
	}
	if clean != bytes.Equal(want, data) {
		t.Fatalf("CanonicalSize(%q) clean = %v", data, clean)
	}
	// Through the reader, in reads of every size.
	for _, n := range []int{1, 2, 3, 7, 4096} {
		r := NewCanonicalReader(bytes.NewReader(data))
		var got []byte
		buf := make([]byte, n)
		for {
			k, err := r.Read(buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("reader(%q, %d) = %q, want %q", data, n, got, want)
		}
	}
	// The counter over split input.
	for cut := 0; cut <= len(data) && cut < 20; cut++ {
		var c counter
		c.add(data[:cut])
		c.add(data[cut:])
		if s, _ := c.result(); s != size {
			t.Fatalf("split at %d: %d, want %d", cut, s, size)
		}
	}
}

func TestCanonical(t *testing.T) {
	for _, s := range []string{"", "a", "\n", "\r", "\r\n", "a\nb", "a\r\nb\n", "\r\r\n\n", "a\r", ".\n.\r\n"} {
		checkCanonical(t, []byte(s))
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"", "a\nb", "Subject: x\r\n\r\nbody\r\n", "\r\r\n\n."} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkCanonical(t, data) })
}

// A file in the Maildir read through Open equals the canonical form for any
// content (the size cache and the clean fast path included).
func FuzzOpen(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("bare\nlf"))
	dir := f.TempDir()
	seq := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		seq++
		d := filepath.Join(dir, fmt.Sprint(seq))
		deliver(t, d, "1.x.box", string(data), 0)
		m, err := Lock(d)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		_, size := m.Info(0)
		got := readAll(t, m, 0)
		want := canonical(data)
		if got != string(want) || size != int64(len(want)) {
			t.Fatalf("Open = %q (size %d), want %q", got, size, want)
		}
		os.RemoveAll(d)
	})
}

func TestNamedSize(t *testing.T) {
	dir := t.TempDir()
	body := "Subject: w\r\n\r\nx\r\n"
	// Stated size equal to the file size: trusted, the file is not read.
	deliver(t, dir, fmt.Sprintf("1.a.box,S=%d,W=%d:2,", len(body), len(body)), body, 2*time.Minute)
	// Dovecot-style LF file: W is the CRLF size, the file is smaller;
	// the size is computed from the content.
	lf := "Subject: w\n\nx\n"
	deliver(t, dir, fmt.Sprintf("2.b.box,S=%d,W=%d", len(lf), len(lf)+3), lf, time.Minute)
	m, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, want := range []string{body, "Subject: w\r\n\r\nx\r\n"} {
		_, size := m.Info(i)
		if got := readAll(t, m, i); got != want || size != int64(len(want)) {
			t.Errorf("message %d: %q size %d, want %q", i, got, size, want)
		}
	}
	for _, c := range []struct {
		name string
		n    int64
		ok   bool
	}{{"1.a.box,S=10,W=12:2,S", 12, true}, {"1.a.box", 0, false}, {"1.a.box,W=x", 0, false}, {"1.a.box:2,W=5", 0, false}} {
		if n, ok := namedSize(c.name); n != c.n || ok != c.ok {
			t.Errorf("namedSize(%q) = %d %v", c.name, n, ok)
		}
	}
}

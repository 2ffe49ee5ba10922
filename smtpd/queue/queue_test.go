package queue_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

func TestValidID(t *testing.T) {
	for _, id := range []string{
		"1772442900.M123456P4242Q17.mail.example.test",
		`1772442900.M1P2Q3.host\0572`, // store.UniqueName escapes '/' and ':'
		"0.M0P0Q0.x",
	} {
		if err := queue.ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{
		"", ".", "..", "../../concierge", "../concierge.json", "/etc/passwd",
		"1772442900.M1P2Q3.mail/../../x", "1772442900.M1P2Q3.", "1772442900.M1P2Q3",
		"1772442900.MxP2Q3.mail", "m1", "1772442900.M1P2Q3.mail example", "1772442900.M1P2Q3.a\x00b",
		"1772442900.M1P2Q3." + strings.Repeat("a", 300),
	} {
		if err := queue.ValidID(id); err == nil {
			t.Errorf("ValidID(%q) accepted it", id)
		}
	}
}

// The names the store gives messages are valid IDs.
func TestStoreNamesAreValidIDs(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"mail.example.test", "odd/host:name", "concierge.office.lan"} {
		st, err := store.Open(dir, host, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id := st.UniqueName(); queue.ValidID(id) != nil {
			t.Errorf("store name %q is not a valid queue ID", id)
		}
		st.Close()
	}
}

// An ID that is a path names no file outside the queue: Load and Remove
// refuse it.
func TestQueueRefusesPathIDs(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	settings := filepath.Join(dir, "concierge.json")
	os.WriteFile(settings, []byte("{}"), 0o600)
	os.WriteFile(filepath.Join(dir, "x.json"), []byte("{}"), 0o600)
	for _, id := range []string{"../../concierge", "../../x", "../env/../../x"} {
		if err := q.Remove(id); err == nil {
			t.Errorf("Remove(%q) succeeded", id)
		}
		if _, err := q.Load(id); err == nil {
			t.Errorf("Load(%q) succeeded", id)
		}
	}
	for _, f := range []string{settings, filepath.Join(dir, "x.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestCountHops(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"Received: a\r\nreceived: b\r\n\tcont\r\nRECEIVED:c\r\nSubject: x\r\n\r\nReceived: in the body\r\n", 3},
		{"Subject: x\n\nReceived: y\n", 0},
		{"Received: only\r\n", 1},
		{"X-Received: no\r\nReceivedX: no\r\n\r\n", 0},
		{"X: " + strings.Repeat("a", 8000) + "\r\nReceived: after a long line\r\n\r\n", 1},
		{strings.Repeat("Received: x\r\n", 120) + "\r\n", 120},
	} {
		if got := queue.CountHops(strings.NewReader(c.in)); got != c.want {
			t.Errorf("CountHops(%.40q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// Whatever ValidID accepts names one file inside the queue directories.
func FuzzValidID(f *testing.F) {
	f.Add("1772442900.M123456P4242Q17.mail.example.test")
	f.Add("../../concierge")
	f.Add(`1.M1P1Q1.a\057b`)
	f.Fuzz(func(t *testing.T, id string) {
		if queue.ValidID(id) != nil {
			return
		}
		if id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || filepath.Base(id) != id {
			t.Fatalf("ValidID accepted %q", id)
		}
	})
}

// CountHops reads headers a sender wrote: it must not fail, and counts
// at most one hop per line.
func FuzzCountHops(f *testing.F) {
	f.Add("Received: a\r\nreceived: b\r\n\r\nReceived: c\r\n")
	f.Add("Received:" + strings.Repeat("x", 5000) + "\nReceived: y\n\n")
	f.Add("\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		if n := queue.CountHops(strings.NewReader(msg)); n < 0 || n > strings.Count(msg, "\n")+1 {
			t.Fatalf("CountHops = %d for %d lines", n, strings.Count(msg, "\n")+1)
		}
	})
}

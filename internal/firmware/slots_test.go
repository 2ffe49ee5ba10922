package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func bundle(t *testing.T, version string) *Bundle {
	t.Helper()
	var buf bytes.Buffer
	files := map[string][]byte{KernelFile: []byte("kernel " + version), InitrdFile: []byte("initrd " + version)}
	if err := Write(&buf, Manifest{Version: version, Kernel: "k"}, files, DevKey()); err != nil {
		t.Fatal(err)
	}
	b, err := Read(&buf, hex.EncodeToString(DevKey().Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bootPartition is a boot partition as the image builder writes it:
// slot A, generation 1.
func bootPartition(t *testing.T, b *Bundle) string {
	dir := t.TempDir()
	files := SlotFiles("A", b)
	files[EntryPath("A", 1, 0)] = []byte(Entry("A", b.Manifest.Version, KernelCmdline))
	for name, data := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// order is the entries in systemd-boot's order, as "slot:state".
func order(t *testing.T, dir string) string {
	t.Helper()
	es, err := Entries(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		s := e.Slot
		if e.Trial {
			s += "?"
		}
		if !e.Good() {
			s += "!"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// bootTrial does what systemd-boot does when it boots a trial entry: one
// try fewer, one done (concierge-2-B+1.conf → concierge-2-B+0-1.conf).
func bootTrial(t *testing.T, dir string) {
	t.Helper()
	es, _ := Entries(dir)
	e := es[0]
	if !e.Trial {
		t.Fatalf("%s is not a trial", e.Name)
	}
	base := strings.TrimSuffix(EntryPath(e.Slot, e.Gen, 0), ".conf")
	to := filepath.Join(dir, base+"+0-1.conf")
	if err := os.Rename(filepath.Join(dir, "loader", "entries", e.Name), to); err != nil {
		t.Fatal(err)
	}
}

func TestInstallTrialMarkGoodRollback(t *testing.T) {
	dir := bootPartition(t, bundle(t, "v1"))
	if got := order(t, dir); got != "A" {
		t.Fatalf("fresh image: %q", got)
	}
	slot, err := Install(dir, bundle(t, "v2"), "A")
	if err != nil || slot != "B" {
		t.Fatalf("Install: %q, %v", slot, err)
	}
	if got := order(t, dir); got != "B? A" {
		t.Errorf("after install: %q; want the trial of B first", got)
	}
	if v := SlotVersion(dir, "B"); v != "v2" {
		t.Errorf("slot B holds %q", v)
	}
	bootTrial(t, dir)
	if err := MarkGood(dir, "B"); err != nil {
		t.Fatal(err)
	}
	if got := order(t, dir); got != "B A" {
		t.Errorf("after marking B good: %q", got)
	}
	if err := MarkGood(dir, "B"); !errors.Is(err, ErrNotTrial) {
		t.Errorf("MarkGood twice: %v", err)
	}

	// The next update goes to A; it does not come up, so the boot after
	// its trial starts B again.
	if slot, err := Install(dir, bundle(t, "v3"), "B"); err != nil || slot != "A" {
		t.Fatalf("Install v3: %q, %v", slot, err)
	}
	if got := order(t, dir); got != "A? B" {
		t.Errorf("after install v3: %q", got)
	}
	bootTrial(t, dir)
	if got := order(t, dir); got != "B A?!" {
		t.Errorf("after a trial that never reported healthy: %q; want B first", got)
	}
	if v := SlotVersion(dir, "A"); v != "v3" {
		t.Errorf("slot A holds %q", v)
	}
	// An update from B again replaces the failed A.
	if slot, err := Install(dir, bundle(t, "v4"), "B"); err != nil || slot != "A" {
		t.Fatalf("Install v4: %q, %v", slot, err)
	}
	if got := order(t, dir); got != "A? B" {
		t.Errorf("after install v4: %q", got)
	}
	es, _ := Entries(dir)
	if es[0].Gen != 4 {
		t.Errorf("generation %d; want 4", es[0].Gen)
	}
}

package boot

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The superblock of a file system mkfs.ext4 made: its size, and a clean
// journal; the same with the recovery flag set as a mounted (or crashed)
// file system has it.
func TestReadExt4Super(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	p := filepath.Join(t.TempDir(), "fs")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", p, "20M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := ReadExt4Super(bytes.NewReader(img))
	if err != nil || sb.Bytes != 20<<20 || sb.BlockSize != 4096 || sb.NeedsRecovery || !sb.Valid {
		t.Errorf("fresh file system: %+v, %v", sb, err)
	}
	img[sbOffset+sbFeatureIncompat] |= incompatRecover
	if sb, err := ReadExt4Super(bytes.NewReader(img)); err != nil || !sb.NeedsRecovery {
		t.Errorf("with the recovery flag: %+v, %v", sb, err)
	}
	if _, err := ReadExt4Super(bytes.NewReader(make([]byte, 1<<16))); !errors.Is(err, ErrNoExt4) {
		t.Errorf("zeros: %v, want ErrNoExt4", err)
	}
}

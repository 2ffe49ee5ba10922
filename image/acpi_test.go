package image_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/appliance/boot"
)

// powerOffBound bounds the time from the button press to QEMU's exit: PID
// 1 gives the services boot.StopGrace, then syncs, unmounts and powers
// off; the rest is margin for TCG on a loaded machine.
var powerOffBound = boot.StopGrace + 60*time.Second

// acpiPowerOff boots a copy of img with a QMP monitor, presses the ACPI
// power button (system_powerdown) once the services are up, and checks
// that QEMU exits by itself, after PID 1 stopped the services and
// unmounted the file systems, and that the data partition's journal is
// clean (on the disk, and as the next boot reads it). A SIGKILL of the
// second boot then leaves the journal dirty: the check tells the two
// apart.
func acpiPowerOff(t *testing.T, img string) {
	dir := t.TempDir()
	image := filepath.Join(dir, "disk.img")
	copyFile(t, img, image)
	qmp := filepath.Join(dir, "qmp.sock")
	v := startVM(t, image, vmMemory, "-qmp", "unix:"+qmp+",server=on,wait=off")
	v.waitLines(readyLine, 1, slowBootDeadline)
	v.waitLines("boot: watching the power button", 1, slowBootDeadline)
	pressed := time.Now()
	if err := qmpCommand(qmp, "system_powerdown"); err != nil {
		t.Fatalf("QMP system_powerdown: %v", err)
	}
	select {
	case <-v.exited:
	case <-time.After(powerOffBound):
		t.Fatalf("QEMU still runs %v after the power button; console:\n%s", powerOffBound, tail(v.console.String()))
	}
	took := time.Since(pressed)
	c := v.console.String()
	for _, want := range []string{"boot: power button pressed", "then=poweroff", "boot: serve stopped", boot.UnmountedLine, "boot: poweroff"} {
		if !strings.Contains(c, want) {
			t.Errorf("the console lacks %q; console:\n%s", want, tail(c))
		}
	}
	if sb := dataSuper(t, image); sb.NeedsRecovery {
		t.Errorf("after the power off the data partition's journal needs recovery: %+v", sb)
	}
	t.Logf("power button to QEMU's exit: %.1f s (services stopped, file systems unmounted)", took.Seconds())

	v = startVM(t, image, vmMemory)
	v.waitLines(readyLine, 1, slowBootDeadline)
	mounted := consoleLine(v.console.String(), `msg="boot: data partition mounted"`)
	if !strings.Contains(mounted, " clean=true") {
		t.Errorf("the next boot did not find the data partition clean: %q; console:\n%s", mounted, tail(v.console.String()))
	}
	v.stop()
	if sb := dataSuper(t, image); !sb.NeedsRecovery {
		t.Errorf("after a SIGKILL of the running box the journal reads clean: %+v; the check cannot tell", sb)
	}
}

// qmpCommand runs one QMP command without arguments (QEMU's QMP
// protocol: greeting, qmp_capabilities, then the command; each answer is
// one JSON object per line, events in between).
func qmpCommand(sock, cmd string) error {
	c, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // {"QMP": {...}}
		return fmt.Errorf("greeting: %w", err)
	}
	for _, ex := range []string{"qmp_capabilities", cmd} {
		if _, err := fmt.Fprintf(c, "{\"execute\": %q}\n", ex); err != nil {
			return err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%s: %w", ex, err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				return fmt.Errorf("%s: %q: %w", ex, line, err)
			}
			if e, ok := m["error"]; ok {
				return fmt.Errorf("%s: %s", ex, e)
			}
			if _, ok := m["return"]; ok {
				break
			}
		}
	}
	return nil
}

// dataSuper reads the ext4 superblock of the data partition of a disk
// image (found in its GPT).
func dataSuper(t *testing.T, image string) boot.Ext4Super {
	t.Helper()
	sb, err := boot.ReadExt4Super(openData(t, image))
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// consoleLine is the first console line that contains s, or "".
func consoleLine(console, s string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

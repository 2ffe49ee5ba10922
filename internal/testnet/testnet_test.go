package testnet

import (
	"debug/elf"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLANHostsReachEachOther(t *testing.T) {
	Require(t, "ping")
	lan := NewLAN(t, "10.77.9.0/24")
	a := lan.AddHost("a", 1)
	b := lan.AddHost("b", 2)
	out := a.Run("ping", "-c", "1", "-W", "2", b.Addr.String())
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping a→b: %s", out)
	}
	if got := lan.Broadcast().String(); got != "10.77.9.255" {
		t.Fatalf("broadcast = %s", got)
	}
	if len(b.MAC()) != 17 {
		t.Fatalf("MAC %q", b.MAC())
	}
}

func TestSafeBufferWait(t *testing.T) {
	var b SafeBuffer
	go func() {
		for _, s := range []string{"one\n", "two\n", "three\n"} {
			b.Write([]byte(s))
		}
	}()
	if !b.Wait(10*time.Second, nil, func(s string) bool { return strings.Contains(s, "three") }) {
		t.Fatalf("wait missed a write: %q", b.String())
	}
	stop := make(chan struct{})
	close(stop)
	if b.Wait(10*time.Second, stop, func(s string) bool { return strings.Contains(s, "four") }) {
		t.Fatal("wait held for text never written")
	}
	if b.Wait(time.Millisecond, nil, func(s string) bool { return strings.Contains(s, "four") }) {
		t.Fatal("wait held for text never written")
	}
}

// The binary the integration tests run is static, also when the tests
// themselves are built with cgo for -race.
func TestConciergeIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	f, err := elf.Open(Concierge(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("the test build of concierge is dynamically linked (%v)", p.Type)
		}
	}
}

// A CLI edit returns once the running server applied it; a hand edit is
// applied by "config reload", which refuses a bad file and keeps the
// settings in force.
func TestBoxWaitsForSettings(t *testing.T) {
	Require(t, "ss")
	lan := NewLAN(t, "10.77.8.0/24")
	b := NewBox(t, lan.AddHost("box", 1))
	b.CLI("domain", "add", "example.test")
	b.Start(25)
	b.WaitSettingsApplied() // the file it started with
	b.CLI("config", "set", "smtp.max_recipients", "7")
	if !strings.Contains(b.Proc.Out.String(), `msg="settings applied" generation=2 `) {
		t.Fatalf("the CLI returned before the second generation was applied:\n%s", b.Proc.Out.String())
	}
	if out := b.CLI("wait", "settings-applied", "--after", "1"); !strings.Contains(out, "generation 2") {
		t.Errorf("wait: %q", out)
	}
	path := filepath.Join(b.Data, "concierge.json")
	good, _ := os.ReadFile(path)
	bad := strings.Replace(string(good), `"max_recipients": 7`, `"max_recipients": -1`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := b.ReloadSettings(false); !strings.Contains(out, "smtp.max_recipients") {
		t.Errorf("the refusal does not name the field: %q", out)
	}
	if !strings.Contains(b.Proc.Out.String(), `msg="settings refused"`) {
		t.Errorf("no refusal logged:\n%s", b.Proc.Out.String())
	}
	// Back to the good file: applied again.
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := b.ReloadSettings(true); !strings.Contains(out, "generation 3") {
		t.Fatalf("the good file was not applied again: %q\n%s", out, b.Proc.Out.String())
	}
}

// A capture stopped right after a burst holds every packet of it, and its
// end marker shows in no read.
func TestCaptureStopKeepsTheLastPackets(t *testing.T) {
	Require(t, "tshark", "ping")
	lan := NewLAN(t, "10.77.9.0/24")
	a, b := lan.AddHost("a", 1), lan.AddHost("b", 2)
	capt := a.Capture("udp port 138")
	// A link just set up drops what it is given until its queue is
	// attached: wait for an answer first.
	if out, err := b.Output("ping", "-c", "1", "-w", "10", a.Addr.String()); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	u := b.ListenUDP(0)
	const n = 200
	for i := range n {
		if _, err := u.WriteToUDPAddrPort([]byte(fmt.Sprintf("datagram %d", i)), netip.AddrPortFrom(a.Addr, 138)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	matched, all := capt.Stop("ip.src == " + b.Addr.String())
	t.Logf("stopped in %v", time.Since(start))
	if got := strings.Count(matched, "\n"); got != n {
		t.Errorf("%d of the %d datagrams sent just before Stop captured:\n%s", got, n, all)
	}
	if got := strings.Count(all, "\n"); got != n {
		t.Errorf("%d packets in the capture, want the %d datagrams and no end marker:\n%s", got, n, all)
	}
}

package pwhash

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestHashAndVerify(t *testing.T) {
	g := NewGate(2, time.Minute)
	h := g.Hash("correct horse")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || !IsHash(h) {
		t.Fatalf("hash %q", h)
	}
	b, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	for _, hash := range []string{h, string(b)} {
		for pw, want := range map[string]bool{"correct horse": true, "correct hors": false, "": false} {
			if ok, err := g.Verify(context.Background(), Normal, hash, pw); ok != want || err != nil {
				t.Errorf("Verify(%.10s, %q) = %v, %v", hash, pw, ok, err)
			}
		}
	}
	// A missing or unreadable hash costs a check and never matches.
	before := g.Checks()
	for _, hash := range []string{"", "plain", "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"} {
		if ok, err := g.Verify(context.Background(), Normal, hash, "plain"); ok || err != nil {
			t.Errorf("Verify(%q) = %v, %v", hash, ok, err)
		}
	}
	if n := g.Checks() - before; n != 3 {
		t.Errorf("%d hashes for 3 checks without a usable hash", n)
	}
	// Hashes that would need more memory than a slot is sized for are
	// not read.
	if IsHash("$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5") {
		t.Error("a 1 GiB argon2id hash is accepted")
	}
}

// A gate of N slots never runs more than N checks at once; a check that
// waits longer than the queue timeout fails with ErrBusy, and one whose
// context ends stops waiting.
func TestGateBound(t *testing.T) {
	const slots = 2
	g := NewGate(slots, 50*time.Millisecond)
	h := g.Hash("pw")
	release := make(chan struct{})
	entered := make(chan struct{}, slots)
	g.held = func(Priority) { entered <- struct{}{}; <-release }
	var wg sync.WaitGroup
	for range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := g.Verify(context.Background(), Normal, h, "pw"); !ok || err != nil {
				t.Errorf("check holding a slot: %v, %v", ok, err)
			}
		}()
	}
	for range slots {
		<-entered
	}
	start := time.Now()
	if _, err := g.Verify(context.Background(), Normal, h, "pw"); !errors.Is(err, ErrBusy) {
		t.Errorf("check beyond the slots: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("ErrBusy after %v, before the queue timeout", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Verify(ctx, Normal, h, "pw"); !errors.Is(err, context.Canceled) {
		t.Errorf("check with an ended context: %v", err)
	}
	close(release)
	wg.Wait()

	// Many checks at once: at most slots run together, all finish.
	g = NewGate(slots, time.Minute)
	var cur, peak atomic.Int32
	g.held = func(Priority) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond) // give the others a chance to overlap
		cur.Add(-1)
	}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "pw"
			if i%2 == 1 {
				pw = "wrong"
			}
			if ok, err := g.Verify(context.Background(), Priority(i%2), h, pw); ok != (i%2 == 0) || err != nil {
				t.Errorf("check %d: %v, %v", i, ok, err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > slots || p < 1 {
		t.Errorf("%d checks ran at once, limit %d", p, slots)
	}
	if n := g.Checks(); n != 20 {
		t.Errorf("%d checks counted, want 20", n)
	}
}

// A Suspect check gets a slot only when no Normal check waits.
func TestGatePriority(t *testing.T) {
	g := NewGate(1, time.Minute)
	h := g.Hash("pw")
	release := make(chan struct{})
	entered := make(chan Priority, 3)
	g.held = func(p Priority) {
		entered <- p
		<-release
	}
	var wg sync.WaitGroup
	start := func(p Priority) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Verify(context.Background(), p, h, "pw")
		}()
	}
	start(Normal)
	<-entered
	// While the slot is held, a suspect check queues first, then a
	// normal one.
	start(Suspect)
	waitQueued(g, Suspect)
	start(Normal)
	waitQueued(g, Normal)
	close(release)
	if p1, p2 := <-entered, <-entered; p1 != Normal || p2 != Suspect {
		t.Errorf("slots went to %v then %v; want the normal check first", p1, p2)
	}
	wg.Wait()
}

// waitQueued waits until a check of priority p waits for a slot.
func waitQueued(g *Gate, p Priority) {
	for {
		g.mu.Lock()
		n := len(g.waiting[p])
		g.mu.Unlock()
		if n > 0 {
			return
		}
		runtime.Gosched()
	}
}

// Once no check runs, the checks' memory is back with the kernel: the
// heap the runtime holds without using it (idle, not released) is far
// below one check's 19 MiB, at once, not after the scavenger's minutes.
func TestIdleGateReturnsMemory(t *testing.T) {
	g := NewGate(2, time.Minute)
	h := g.Hash("correct horse")
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Verify(context.Background(), Normal, h, "correct horse")
		}()
	}
	wg.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if kept := ms.HeapIdle - ms.HeapReleased; kept > 8<<20 {
		t.Errorf("after the checks the runtime keeps %d MiB of idle heap from the kernel", kept>>20)
	}
}

package authlimit

import (
	"fmt"
	"testing"
	"time"
)

func TestDelayDoublesAndCaps(t *testing.T) {
	l := &Limiter{Base: time.Millisecond, Max: 8 * time.Millisecond}
	if d := l.Delay("ip:1"); d != 0 {
		t.Fatalf("delay before any failure: %v", d)
	}
	want := []time.Duration{1, 2, 4, 8, 8}
	for i, w := range want {
		l.Fail("ip:1", "user:bob")
		if d := l.Delay("ip:1"); d != w*time.Millisecond {
			t.Errorf("after %d failures: %v, want %v", i+1, d, w*time.Millisecond)
		}
	}
	if d := l.Delay("ip:2", "user:bob"); d != 8*time.Millisecond {
		t.Errorf("the user key does not count from another address: %v", d)
	}
	l.Succeed("user:bob")
	if d := l.Delay("ip:2", "user:bob"); d != 0 {
		t.Errorf("after success: %v", d)
	}
}

func TestWindowForgets(t *testing.T) {
	l := &Limiter{Window: time.Millisecond}
	l.Fail("k")
	time.Sleep(5 * time.Millisecond)
	if d := l.Delay("k"); d != 0 {
		t.Errorf("failure not forgotten: %v", d)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	var l Limiter
	for i := 0; i < maxEntries+500; i++ {
		l.Fail(fmt.Sprint("ip:", i))
	}
	if len(l.m) > maxEntries {
		t.Errorf("%d entries kept", len(l.m))
	}
}

// Package authlimit slows down password guessing: after each failed login
// for a key (a client address, a user name) the next failure is answered
// later, doubling from a base delay up to a maximum, until the key has had
// no failure for a while. SMTP AUTH and POP3 logins share it.
package authlimit

import (
	"sync"
	"time"
)

// Defaults for a Limiter's fields.
const (
	DefaultBase   = time.Second
	DefaultMax    = 16 * time.Second
	DefaultWindow = 15 * time.Minute
	// maxEntries bounds the memory of failures; under a flood of new
	// keys, keys already known still count.
	maxEntries = 10000
)

// Limiter remembers failed logins. The zero value uses the defaults.
type Limiter struct {
	Base   time.Duration // pause after the first failure
	Max    time.Duration // longest pause
	Window time.Duration // a key is forgotten this long after its last failure

	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	n    int
	last time.Time
}

func (l *Limiter) params() (base, max, window time.Duration) {
	base, max, window = l.Base, l.Max, l.Window
	if base == 0 {
		base = DefaultBase
	}
	if max == 0 {
		max = DefaultMax
	}
	if window == 0 {
		window = DefaultWindow
	}
	return
}

// Delay is how long to wait before answering a failure for any of keys.
func (l *Limiter) Delay(keys ...string) time.Duration {
	base, max, window := l.params()
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, k := range keys {
		e := l.m[k]
		if e == nil || time.Since(e.last) > window {
			continue
		}
		if v := base << min(e.n-1, 10); v > d {
			d = v
		}
	}
	return min(d, max)
}

// Fail records a failed login for each key.
func (l *Limiter) Fail(keys ...string) {
	_, _, window := l.params()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*entry{}
	}
	now := time.Now()
	if len(l.m) >= maxEntries {
		for k, e := range l.m {
			if now.Sub(e.last) > window {
				delete(l.m, k)
			}
		}
	}
	for _, k := range keys {
		e := l.m[k]
		if e == nil {
			if len(l.m) >= maxEntries {
				continue
			}
			e = &entry{}
			l.m[k] = e
		}
		e.n++
		e.last = now
	}
}

// Succeed forgets the failures of keys.
func (l *Limiter) Succeed(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.m, k)
	}
}

// FailAndWait records a failure and sleeps for the resulting delay.
func (l *Limiter) FailAndWait(keys ...string) {
	l.Fail(keys...)
	time.Sleep(l.Delay(keys...))
}

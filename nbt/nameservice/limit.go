package nameservice

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"concierge/nbt/wire"
)

// limiter is a token bucket per source address, in shards so readers on
// several sockets rarely wait for each other. The number of addresses is
// bounded; when a shard is full its idle buckets are dropped.
type limiter struct {
	rate, burst float64
	off         bool
	shards      [16]struct {
		mu sync.Mutex
		m  map[netip.Addr]*bucket
	}
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst int) *limiter {
	l := &limiter{rate: float64(rate), burst: float64(burst), off: rate < 0}
	for i := range l.shards {
		l.shards[i].m = map[netip.Addr]*bucket{}
	}
	return l
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	if l.off {
		return true
	}
	b4 := a.As4()
	sh := &l.shards[b4[3]&15]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[a]
	if b == nil {
		if len(sh.m) >= maxRateSources/len(l.shards) {
			l.prune(sh.m, now)
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.m[a] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune drops buckets that have refilled; if none has, it drops all.
func (l *limiter) prune(m map[netip.Addr]*bucket, now time.Time) {
	for a, b := range m {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(m, a)
		}
	}
	if len(m) >= maxRateSources/len(l.shards) {
		clear(m)
	}
}

func (l *limiter) sweep(now time.Time) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for a, b := range sh.m {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(sh.m, a)
			}
		}
		sh.mu.Unlock()
	}
}

// counters are the service's statistics.
type counters struct {
	rxOpcode    [16]atomic.Uint64
	rxKind      [wire.KindCount]atomic.Uint64
	txKind      [wire.KindCount]atomic.Uint64
	txRcode     [16]atomic.Uint64
	malformed   atomic.Uint64
	rateLimited atomic.Uint64
	remote      atomic.Uint64
	ignored     atomic.Uint64
	sendErrors  atomic.Uint64
	ownerFull   atomic.Uint64 // registrations refused: the address holds MaxNamesPerOwner
	tableFull   atomic.Uint64 // registrations refused: the table (or a group) is full
	ttlCapped   atomic.Uint64 // registrations granted another TTL than asked
	panics      atomic.Uint64 // handlers that panicked and were recovered
}

// rareLog lets one log line of a kind through per interval and counts
// the ones it held back, so that a flood cannot flood the log too.
type rareLog struct {
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*rareKind
}

type rareKind struct {
	last time.Time
	held int
}

func newRareLog(every time.Duration) *rareLog {
	return &rareLog{every: every, kinds: map[string]*rareKind{}}
}

// allow reports whether a line of kind may be logged now, and how many
// were held back since the last one.
func (r *rareLog) allow(kind string, now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[kind]
	if k == nil {
		k = &rareKind{}
		r.kinds[kind] = k
	} else if now.Sub(k.last) < r.every {
		k.held++
		return false, 0
	}
	held := k.held
	k.last, k.held = now, 0
	return true, held
}

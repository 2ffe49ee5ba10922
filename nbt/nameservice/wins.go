package nameservice

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"concierge/internal/durable"
	"concierge/nbt/wire"
)

// table is the NBNS name table (RFC 1001 15): unique names with one
// owner address, group names with their member addresses, each address
// with its own expiry.
type table struct {
	max            int
	minTTL, maxTTL time.Duration

	mu       sync.Mutex
	m        map[string]*entry
	dirty    bool
	lastSave time.Time
}

type entry struct {
	name   wire.Name
	group  bool
	owners []owner
}

type owner struct {
	addr    netip.Addr
	flags   uint16 // NB_FLAGS as registered
	expires time.Time
}

func key(n wire.Name) string { return string(n.Label[:]) + "." + strings.ToLower(n.Scope) }

func newTable(max int, minTTL, maxTTL time.Duration) *table {
	return &table{max: max, minTTL: minTTL, maxTTL: maxTTL, m: map[string]*entry{}}
}

// grant clamps a requested TTL in seconds; 0 (infinite) gets the maximum.
func (t *table) grant(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if ttl == 0 || d > t.maxTTL {
		return t.maxTTL
	}
	return max(d, t.minTTL)
}

// live returns the entry for n with expired owners removed, or nil.
func (t *table) live(n wire.Name, now time.Time) *entry {
	k := key(n)
	e := t.m[k]
	if e == nil {
		return nil
	}
	kept := e.owners[:0]
	for _, o := range e.owners {
		if now.Before(o.expires) {
			kept = append(kept, o)
		}
	}
	if len(kept) != len(e.owners) {
		t.dirty = true
	}
	e.owners = kept
	if len(kept) == 0 {
		delete(t.m, k)
		return nil
	}
	return e
}

// regResult is what a registration attempt found.
type regResult int

const (
	regDone     regResult = iota // registered or refreshed
	regConflict                  // a unique name owned by another live address: challenge it
	regRefused                   // unique against group or group against unique
	regFull                      // the table or group is full
)

// register adds or refreshes addr as owner (unique) or member (group).
// For a unique name owned by another address it returns regConflict and
// that owner.
func (t *table) register(n wire.Name, group bool, addr netip.Addr, flags uint16, ttl time.Duration, now time.Time) (regResult, netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(n, now)
	if e == nil {
		if len(t.m) >= t.max {
			return regFull, netip.Addr{}
		}
		t.m[key(n)] = &entry{name: n, group: group, owners: []owner{{addr, flags, now.Add(ttl)}}}
		t.dirty = true
		return regDone, netip.Addr{}
	}
	if e.group != group {
		return regRefused, e.owners[0].addr
	}
	for i := range e.owners {
		if e.owners[i].addr == addr {
			e.owners[i].expires = now.Add(ttl)
			e.owners[i].flags = flags
			t.dirty = true
			return regDone, netip.Addr{}
		}
	}
	if !group {
		return regConflict, e.owners[0].addr
	}
	if len(e.owners) >= maxGroupMembers {
		return regFull, netip.Addr{}
	}
	e.owners = append(e.owners, owner{addr, flags, now.Add(ttl)})
	t.dirty = true
	return regDone, netip.Addr{}
}

// replace makes addr the only owner of the unique name n (after a
// challenge the old owner did not answer).
func (t *table) replace(n wire.Name, addr netip.Addr, flags uint16, ttl time.Duration, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[key(n)] = &entry{name: n, owners: []owner{{addr, flags, now.Add(ttl)}}}
	t.dirty = true
}

// release removes addr from n; it reports whether addr was an owner, and
// true when the name was not there at all.
func (t *table) release(n wire.Name, addr netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(n, now)
	if e == nil {
		return true
	}
	for i, o := range e.owners {
		if o.addr == addr {
			e.owners = append(e.owners[:i], e.owners[i+1:]...)
			if len(e.owners) == 0 {
				delete(t.m, key(n))
			}
			t.dirty = true
			return true
		}
	}
	return false
}

// lookup returns the NB entries of n and the shortest TTL left.
func (t *table) lookup(n wire.Name, now time.Time) ([]wire.NB, uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(n, now)
	if e == nil {
		return nil, 0, false
	}
	es := make([]wire.NB, 0, len(e.owners))
	left := time.Duration(1<<63 - 1)
	for _, o := range e.owners {
		f := o.flags &^ wire.NBGroup
		if e.group {
			f |= wire.NBGroup
		}
		es = append(es, wire.NB{Flags: f, Addr: o.addr})
		left = min(left, o.expires.Sub(now))
	}
	return es, ttlSeconds(left), true
}

// owns reports whether addr is a live owner of n.
func (t *table) owns(n wire.Name, addr netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.live(n, now); e != nil {
		for _, o := range e.owners {
			if o.addr == addr {
				return true
			}
		}
	}
	return false
}

// expire drops every expired owner and returns how many names went away.
func (t *table) expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.m {
		if t.live(e.name, now) == nil {
			n++
		}
	}
	return n
}

// WINSName is one row of the WINS table in the status.
type WINSName struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"` // "unique" or "group"
	Owners  []string `json:"owners"`
	TTLLeft string   `json:"ttl_left"`
}

func (t *table) snapshot(now time.Time) []WINSName {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []WINSName
	for _, e := range t.m {
		if t.live(e.name, now) == nil {
			continue
		}
		w := WINSName{Name: e.name.String(), Type: "unique"}
		if e.group {
			w.Type = "group"
		}
		left := time.Duration(1<<63 - 1)
		for _, o := range e.owners {
			w.Owners = append(w.Owners, o.addr.String())
			left = min(left, o.expires.Sub(now))
		}
		w.TTLLeft = left.Round(time.Second).String()
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// The state file: JSON, labels in hex so every byte survives.
type fileTable struct {
	Version int         `json:"version"`
	Names   []fileEntry `json:"names"`
}

type fileEntry struct {
	Label  string      `json:"label"` // hex of the 16 bytes
	Name   string      `json:"name"`  // readable, ignored on load
	Scope  string      `json:"scope,omitempty"`
	Group  bool        `json:"group,omitempty"`
	Owners []fileOwner `json:"owners"`
}

type fileOwner struct {
	Addr    netip.Addr `json:"addr"`
	Flags   uint16     `json:"flags"`
	Expires time.Time  `json:"expires"`
}

// save writes the table if it changed and the last write is at least
// interval old (or force). It returns the number of names and whether it
// wrote.
func (t *table) save(path string, now time.Time, force bool, interval time.Duration) (int, bool, error) {
	t.mu.Lock()
	if !t.dirty || (!force && now.Sub(t.lastSave) < interval) {
		t.mu.Unlock()
		return 0, false, nil
	}
	ft := fileTable{Version: 1}
	for _, e := range t.m {
		if t.live(e.name, now) == nil {
			continue
		}
		fe := fileEntry{Label: hex.EncodeToString(e.name.Label[:]), Name: e.name.String(), Scope: e.name.Scope, Group: e.group}
		for _, o := range e.owners {
			fe.Owners = append(fe.Owners, fileOwner{o.addr, o.flags, o.expires.UTC().Truncate(time.Second)})
		}
		ft.Names = append(ft.Names, fe)
	}
	t.dirty = false
	t.lastSave = now
	t.mu.Unlock()
	sort.Slice(ft.Names, func(i, j int) bool { return ft.Names[i].Label+ft.Names[i].Scope < ft.Names[j].Label+ft.Names[j].Scope })
	data, err := json.MarshalIndent(ft, "", " ")
	if err != nil {
		return 0, false, err
	}
	if err := durable.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		t.mu.Lock()
		t.dirty = true
		t.mu.Unlock()
		return 0, false, err
	}
	return len(ft.Names), true, nil
}

// load reads the state file; a missing file is an empty table.
func (t *table) load(path string, now time.Time) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("nameservice: %w", err)
	}
	var ft fileTable
	if err := json.Unmarshal(data, &ft); err != nil {
		return 0, fmt.Errorf("nameservice: %s: %w", path, err)
	}
	if ft.Version != 1 {
		return 0, fmt.Errorf("nameservice: %s: unknown version %d", path, ft.Version)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, fe := range ft.Names {
		lb, err := hex.DecodeString(fe.Label)
		if err != nil || len(lb) != wire.NameLen {
			return 0, fmt.Errorf("nameservice: %s: bad label %q", path, fe.Label)
		}
		e := &entry{name: wire.Name{Label: [wire.NameLen]byte(lb), Scope: fe.Scope}, group: fe.Group}
		for _, o := range fe.Owners {
			if o.Addr.Is4() && now.Before(o.Expires) && len(e.owners) < maxGroupMembers {
				e.owners = append(e.owners, owner{o.Addr, o.Flags, o.Expires})
			}
		}
		if len(e.owners) > 0 && len(t.m) < t.max {
			t.m[key(e.name)] = e
		}
	}
	t.lastSave = now
	return len(t.m), nil
}

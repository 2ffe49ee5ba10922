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
// with its own expiry. It holds at most max names, and at most perOwner
// of them (unique or as a group member) for any one address.
type table struct {
	max, perOwner  int
	minTTL, maxTTL time.Duration

	mu       sync.Mutex
	m        map[string]*entry
	owned    map[netip.Addr]int // names held per address
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

func newTable(max, perOwner int, minTTL, maxTTL time.Duration) *table {
	return &table{max: max, perOwner: perOwner, minTTL: minTTL, maxTTL: maxTTL, m: map[string]*entry{}, owned: map[netip.Addr]int{}}
}

// grant chooses the TTL granted for a requested one in seconds (RFC 1002
// 4.2.2: the NBNS may grant another TTL than asked): clamped to
// [minTTL, maxTTL], and 0 (infinite) gets maxTTL.
func (t *table) grant(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if ttl == 0 || d > t.maxTTL {
		return t.maxTTL
	}
	return max(d, t.minTTL)
}

// hold and drop count a name held by a; t.mu is held.
func (t *table) hold(a netip.Addr) { t.owned[a]++ }

func (t *table) drop(a netip.Addr) {
	if t.owned[a]--; t.owned[a] <= 0 {
		delete(t.owned, a)
	}
}

// atCap reports whether a may hold no more names; t.mu is held.
func (t *table) atCap(a netip.Addr) bool { return t.owned[a] >= t.perOwner }

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
		} else {
			t.drop(o.addr)
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
	regDone      regResult = iota // registered or refreshed
	regConflict                   // a unique name owned by another live address: challenge it
	regRefused                    // unique against group or group against unique
	regFull                       // the table or group is full
	regOwnerFull                  // the address holds as many names as it may
)

// Suffixes the table treats apart, as Windows WINS servers do.
const (
	suffixDomainMaster      = 0x1B // DOMAIN<1B>, the domain master browser: always unique
	suffixDomainControllers = 0x1C // DOMAIN<1C>, the domain controllers: a special group
)

// class is how the table keeps a name: DOMAIN<1B> is unique whatever the
// G flag says; DOMAIN<1C> is a group (even when registered unique) of at
// most maxDomainMembers addresses, each refreshed on its own, where a new
// member replaces the oldest one when it is full; any other name is kept
// as registered, a group with up to maxGroupMembers addresses.
func class(n wire.Name, group bool) (isGroup bool, limit int, rotate bool) {
	switch n.Suffix() {
	case suffixDomainMaster:
		return false, 1, false
	case suffixDomainControllers:
		return true, maxDomainMembers, true
	}
	return group, maxGroupMembers, false
}

// oldest returns the index of the member of e refreshed longest ago (the
// one whose registration runs out first).
func oldest(e *entry) int {
	i := 0
	for j, o := range e.owners {
		if o.expires.Before(e.owners[i].expires) {
			i = j
		}
	}
	return i
}

// register adds or refreshes addr as owner (unique) or member (group),
// the name kept as class says. For a unique name owned by another
// address it returns regConflict and that owner. A refresh is always
// taken; a name new to addr only while addr holds fewer than perOwner
// names and the table has room.
func (t *table) register(n wire.Name, group bool, addr netip.Addr, flags uint16, ttl time.Duration, now time.Time) (regResult, netip.Addr) {
	group, limit, rotate := class(n, group)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(n, now)
	if e == nil {
		if t.atCap(addr) {
			return regOwnerFull, netip.Addr{}
		}
		if len(t.m) >= t.max {
			return regFull, netip.Addr{}
		}
		t.m[key(n)] = &entry{name: n, group: group, owners: []owner{{addr, flags, now.Add(ttl)}}}
		t.hold(addr)
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
	if t.atCap(addr) {
		return regOwnerFull, netip.Addr{}
	}
	if !group {
		return regConflict, e.owners[0].addr
	}
	if len(e.owners) >= limit {
		if !rotate {
			return regFull, netip.Addr{}
		}
		i := oldest(e)
		t.drop(e.owners[i].addr)
		e.owners = append(e.owners[:i], e.owners[i+1:]...)
	}
	e.owners = append(e.owners, owner{addr, flags, now.Add(ttl)})
	t.hold(addr)
	t.dirty = true
	return regDone, netip.Addr{}
}

// replace makes addr the only owner of the unique name n (after a
// challenge the old owner did not answer): regDone, or regOwnerFull when
// addr reached its bound meanwhile, or regFull when the name went away
// meanwhile and the table has no room.
func (t *table) replace(n wire.Name, addr netip.Addr, flags uint16, ttl time.Duration, now time.Time) regResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(n, now)
	if (e == nil || !holds(e, addr)) && t.atCap(addr) {
		return regOwnerFull
	}
	if e == nil && len(t.m) >= t.max {
		return regFull
	}
	if e != nil {
		for _, o := range e.owners {
			t.drop(o.addr)
		}
	}
	t.m[key(n)] = &entry{name: n, owners: []owner{{addr, flags, now.Add(ttl)}}}
	t.hold(addr)
	t.dirty = true
	return regDone
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
			t.drop(addr)
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

// holds reports whether addr is among e's owners.
func holds(e *entry, addr netip.Addr) bool {
	for _, o := range e.owners {
		if o.addr == addr {
			return true
		}
	}
	return false
}

// owns reports whether addr is a live owner of n.
func (t *table) owns(n wire.Name, addr netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(n, now)
	return e != nil && holds(e, addr)
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

// load reads the state file; a missing file is an empty table. The
// bounds of today's settings hold for what it read: expiries beyond
// maxTTL from now are brought in, and names over an address's bound or
// the table's are left out.
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
		e := &entry{name: wire.Name{Label: [wire.NameLen]byte(lb), Scope: fe.Scope}}
		group, limit, _ := class(e.name, fe.Group)
		e.group = group
		if len(t.m) >= t.max || t.m[key(e.name)] != nil {
			continue
		}
		latest := now.Add(t.maxTTL)
		for _, o := range fe.Owners {
			if o.Addr.Is4() && now.Before(o.Expires) && len(e.owners) < limit && !t.atCap(o.Addr) && !holds(e, o.Addr) {
				if o.Expires.After(latest) {
					o.Expires = latest
					t.dirty = true
				}
				e.owners = append(e.owners, owner{o.Addr, o.Flags, o.Expires})
				t.hold(o.Addr)
			}
			if !e.group && len(e.owners) == 1 {
				break // a unique name has one owner
			}
		}
		if len(e.owners) > 0 {
			t.m[key(e.name)] = e
		}
	}
	t.lastSave = now
	return len(t.m), nil
}

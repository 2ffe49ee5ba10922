package dhcpd

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"concierge/internal/durable"
)

// leaseFileVersion is the version of the lease file's format.
const leaseFileVersion = 1

// leaseFile is the lease file: one JSON document, replaced atomically.
type leaseFile struct {
	Version  int             `json:"version"`
	Leases   []leaseRecord   `json:"leases"`
	Declined []declineRecord `json:"declined,omitempty"`
}

type leaseRecord struct {
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"`
	ClientID string     `json:"client_id,omitempty"` // hex of option 61
	Hostname string     `json:"hostname,omitempty"`
	// Expires is when the address is free again; for a bound lease the
	// written horizon (see lease.horizon), for a released one the past.
	Expires time.Time `json:"expires"`
}

type declineRecord struct {
	IP    netip.Addr `json:"ip"`
	Until time.Time  `json:"until"`
}

// encodeLeases writes the table as the lease file.
func encodeLeases(p *pool) []byte {
	f := leaseFile{Version: leaseFileVersion, Leases: []leaseRecord{}}
	for _, l := range p.sorted() {
		if l.state == stateOffered && !l.horizon.After(l.expires) {
			continue // an offer is not a lease; a renewal's offer keeps its horizon
		}
		r := leaseRecord{IP: l.addr, MAC: l.mac.String(), Hostname: l.hostname, Expires: l.expires}
		if l.state != stateReleased && l.horizon.After(r.Expires) {
			r.Expires = l.horizon
		}
		if id, ok := cutPrefix(l.client, "id:"); ok {
			r.ClientID = hex.EncodeToString([]byte(id))
		}
		f.Leases = append(f.Leases, r)
	}
	for a, until := range p.declined {
		f.Declined = append(f.Declined, declineRecord{IP: a, Until: until})
	}
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		panic(err) // plain types only
	}
	return append(b, '\n')
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// decodeLeases loads a lease file into p. Records for addresses outside
// the subnet are dropped (the subnet may have changed since).
func decodeLeases(data []byte, p *pool, now time.Time) error {
	var f leaseFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("dhcpd: lease file: %w", err)
	}
	if f.Version != leaseFileVersion {
		return fmt.Errorf("dhcpd: lease file version %d, this build reads %d", f.Version, leaseFileVersion)
	}
	for _, r := range f.Leases {
		mac, err := net.ParseMAC(r.MAC)
		if err != nil || !p.subnet.Contains(r.IP) {
			continue
		}
		key := clientKey(nil, mac)
		if r.ClientID != "" {
			id, err := hex.DecodeString(r.ClientID)
			if err != nil {
				continue
			}
			key = clientKey(id, mac)
		}
		st := stateReleased
		if now.Before(r.Expires) {
			st = stateBound
		}
		l := p.set(r.IP, key, mac, st, r.Expires)
		l.hostname, l.horizon = r.Hostname, r.Expires
	}
	for _, d := range f.Declined {
		if p.subnet.Contains(d.IP) && now.Before(d.Until) {
			p.declined[d.IP] = d.Until
		}
	}
	return nil
}

// store writes the lease file with group commit: a change that must be
// durable before the server answers (a new or extended lease, before its
// ACK) waits for the next write, which takes every change made within the
// commit window; other changes (RELEASE, DECLINE) ride along with it or
// are written after the lazy interval. One write per burst, not per packet.
type store struct {
	path   string
	window time.Duration
	lazy   time.Duration
	encode func() []byte // snapshot of the table, taken under the server's lock

	mu      sync.Mutex
	next    *batch // waiters for the next write; nil when none
	dirty   bool   // a lazy change is not written yet
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	// Writes counts lease file writes; Errors failed ones.
	writes, errs uint64
}

// batch is one write's waiters.
type batch struct {
	done chan struct{}
	err  error
}

func newStore(path string, window, lazy time.Duration, encode func() []byte) *store {
	s := &store{path: path, window: window, lazy: lazy, encode: encode,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.run()
	return s
}

// load reads the lease file; a missing file is an empty table.
func (s *store) load(p *pool, now time.Time) error {
	if s.path == "" {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dhcpd: %w", err)
	}
	return decodeLeases(data, p, now)
}

// commit asks for a write of the table as it is now and returns the batch
// to wait on.
func (s *store) commit() *batch {
	select {
	case <-s.stop:
		b := &batch{done: make(chan struct{}), err: errClosed}
		close(b.done)
		return b
	default:
	}
	s.mu.Lock()
	b := s.next
	if b == nil {
		b = &batch{done: make(chan struct{})}
		s.next = b
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return b
}

// changed notes a change that may wait for the lazy interval.
func (s *store) changed() {
	s.mu.Lock()
	s.dirty = true
	s.mu.Unlock()
}

func (s *store) run() {
	defer close(s.stopped)
	lazy := time.NewTicker(s.lazy)
	defer lazy.Stop()
	for {
		stopping := false
		select {
		case <-s.kick:
			if s.window > 0 {
				t := time.NewTimer(s.window)
				select {
				case <-t.C:
				case <-s.stop:
					t.Stop()
					stopping = true
				}
			}
		case <-lazy.C:
		case <-s.stop:
			stopping = true
		}
		s.mu.Lock()
		b, dirty := s.next, s.dirty
		s.next, s.dirty = nil, false
		s.mu.Unlock()
		if b != nil || dirty {
			err := s.write()
			if b != nil {
				b.err = err
				close(b.done)
			}
		}
		if stopping {
			return
		}
	}
}

func (s *store) write() error {
	data := s.encode()
	if s.path == "" {
		return nil
	}
	err := durable.WriteFile(s.path, data, 0o600)
	s.mu.Lock()
	s.writes++
	if err != nil {
		s.errs++
		s.dirty = true // try again at the next round
	}
	s.mu.Unlock()
	return err
}

// counts returns the writes and failed writes so far.
func (s *store) counts() (writes, errs uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes, s.errs
}

// close writes what is pending and stops the writer.
func (s *store) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.stopped
}

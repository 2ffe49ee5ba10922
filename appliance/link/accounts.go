package link

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"concierge/internal/durable"
)

// MaxRecords is how many link-ups the accounts keep (the oldest go).
const MaxRecords = 2000

// Duration is a time.Duration that reads as "1m30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Record is one link-up.
type Record struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end,omitzero"` // zero while up
	Reason     string    `json:"reason"`
	DownReason string    `json:"down_reason,omitempty"`
	DialTime   Duration  `json:"dial_time"`
	// Messages and bytes out (delivered) and in (received from the ISP).
	MessagesOut int   `json:"messages_out"`
	BytesOut    int64 `json:"bytes_out"`
	MessagesIn  int   `json:"messages_in"`
	BytesIn     int64 `json:"bytes_in"`
}

// Day is the totals of one day (UTC).
type Day struct {
	Date        string   `json:"date"`
	LinkUps     int      `json:"link_ups"`
	UpTime      Duration `json:"up_time"`
	MessagesOut int      `json:"messages_out"`
	BytesOut    int64    `json:"bytes_out"`
	MessagesIn  int      `json:"messages_in"`
	BytesIn     int64    `json:"bytes_in"`
}

// Accounts is the durable log of link-ups: one JSON file rewritten
// atomically (internal/durable) at each link-up and link-down.
type Accounts struct {
	path string
	mu   sync.Mutex
	recs []Record
}

// OpenAccounts reads the accounts file (missing: empty). A record left
// open by a crash is closed at its last known state, marked so.
func OpenAccounts(path string) (*Accounts, error) {
	a := &Accounts{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("link: accounts: %w", err)
	}
	if err := json.Unmarshal(b, &a.recs); err != nil {
		return nil, fmt.Errorf("link: accounts %s: %w", path, err)
	}
	for i := range a.recs {
		if a.recs[i].End.IsZero() {
			a.recs[i].End = a.recs[i].Start
			a.recs[i].DownReason = "box restarted while the link was up (duration unknown)"
		}
	}
	return a, nil
}

// Put adds a record, or replaces the one with the same start.
func (a *Accounts) Put(r Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.recs); n > 0 && a.recs[n-1].Start.Equal(r.Start) {
		a.recs[n-1] = r
	} else {
		a.recs = append(a.recs, r)
	}
	if len(a.recs) > MaxRecords {
		a.recs = a.recs[len(a.recs)-MaxRecords:]
	}
	b, err := json.MarshalIndent(a.recs, "", " ")
	if err != nil {
		return err
	}
	return durable.WriteFile(a.path, b, 0o600)
}

// Recent returns the last n records, newest first.
func (a *Accounts) Recent(n int) []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Record
	for i := len(a.recs) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, a.recs[i])
	}
	return out
}

// Days returns the totals of the last n days with link-ups, newest
// first; a record still open counts up to now.
func (a *Accounts) Days(n int, now time.Time) []Day {
	a.mu.Lock()
	defer a.mu.Unlock()
	by := map[string]*Day{}
	for _, r := range a.recs {
		date := r.Start.UTC().Format(time.DateOnly)
		d := by[date]
		if d == nil {
			d = &Day{Date: date}
			by[date] = d
		}
		end := r.End
		if end.IsZero() {
			end = now
		}
		d.LinkUps++
		d.UpTime += Duration(end.Sub(r.Start))
		d.MessagesOut += r.MessagesOut
		d.BytesOut += r.BytesOut
		d.MessagesIn += r.MessagesIn
		d.BytesIn += r.BytesIn
	}
	var out []Day
	for _, d := range by {
		d.UpTime = Duration(time.Duration(d.UpTime).Round(time.Second))
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Date > out[j].Date })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

package link

import "time"

// Status is the link's state for the control API.
type Status struct {
	Mode      Mode            `json:"mode"`
	State     State           `json:"state"`
	UpSince   time.Time       `json:"up_since,omitzero"`
	Current   *Record         `json:"current,omitempty"`
	LastError string          `json:"last_error,omitempty"`
	Release   []ReleaseResult `json:"release,omitempty"`
	Recent    []Record        `json:"recent"`
	Days      []Day           `json:"days"`
}

// Status returns the state, the last release results and the accounts.
func (m *Manager) Status() Status {
	m.mu.Lock()
	st := Status{Mode: or(m.set.Mode, Always), State: m.state, LastError: m.lastError, Release: append([]ReleaseResult(nil), m.release...)}
	if m.state == Up {
		st.UpSince = m.upSince
	}
	if m.cur != nil {
		c := *m.cur
		st.Current = &c
	}
	m.mu.Unlock()
	if m.acct != nil {
		st.Recent = m.acct.Recent(20)
		st.Days = m.acct.Days(14, m.now())
	}
	return st
}

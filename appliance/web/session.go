package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// The cookies of the setup page.
const (
	// SessionCookie holds the session id of a logged-in admin.
	SessionCookie = "concierge_session"
	// preCookie ties the CSRF token of the login and setup forms to the
	// browser before there is a session.
	preCookie = "concierge_pre"
)

// Limits of the sessions, named here and nowhere else.
const (
	// SessionIdle ends a session nobody used for this long.
	SessionIdle = 30 * time.Minute
	// SessionMaxAge ends a session this long after the login, used or not.
	SessionMaxAge = 12 * time.Hour
	// MaxSessions bounds the sessions held at once; a new login past it
	// ends the session used least recently.
	MaxSessions = 16
	// idLen is the length of session ids and CSRF tokens, in random bytes.
	idLen = 32
)

// session is one logged-in browser. Its fields after creation are guarded
// by sessions.mu.
type session struct {
	key     [32]byte // SHA-256 of the cookie's id: the map key
	csrf    string
	created time.Time
	seen    time.Time
	notice  string // shown once on the next page
}

// sessions are held in memory only: a restart of the process logs
// everyone out.
type sessions struct {
	now    func() time.Time
	preKey []byte // HMAC key of pre-session CSRF tokens

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, preKey: []byte(randomToken()), m: map[[32]byte]*session{}}
}

func randomToken() string {
	b := make([]byte, idLen)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns the id for the cookie.
func (ss *sessions) create() (string, *session) {
	id := randomToken()
	now := ss.now()
	s := &session{key: sha256.Sum256([]byte(id)), csrf: randomToken(), created: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expireLocked(now)
	for len(ss.m) >= MaxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(ss.m, oldest.key)
	}
	ss.m[s.key] = s
	return id, s
}

func (ss *sessions) expireLocked(now time.Time) {
	for k, s := range ss.m {
		if now.Sub(s.seen) > SessionIdle || now.Sub(s.created) > SessionMaxAge {
			delete(ss.m, k)
		}
	}
}

// get returns the live session of the request's cookie, or nil, and
// marks it used.
func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[key]
	if s == nil {
		return nil
	}
	if now.Sub(s.seen) > SessionIdle || now.Sub(s.created) > SessionMaxAge {
		delete(ss.m, key)
		return nil
	}
	s.seen = now
	return s
}

func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	delete(ss.m, s.key)
	ss.mu.Unlock()
}

// endOthers ends every session but keep (after the admin password changed).
func (ss *sessions) endOthers(keep *session) {
	ss.mu.Lock()
	for k := range ss.m {
		if k != keep.key {
			delete(ss.m, k)
		}
	}
	ss.mu.Unlock()
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// setNotice keeps a message for the next page the session sees.
func (ss *sessions) setNotice(s *session, msg string) {
	ss.mu.Lock()
	s.notice = msg
	ss.mu.Unlock()
}

func (ss *sessions) takeNotice(s *session) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := s.notice
	s.notice = ""
	return n
}

// preToken is the CSRF token of the login and setup forms: an HMAC of the
// browser's pre-session cookie, which only this process can compute.
func (ss *sessions) preToken(cookie string) string {
	m := hmac.New(sha256.New, ss.preKey)
	m.Write([]byte("pre-session csrf\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// tokenEqual compares two tokens in constant time; an empty one never
// matches.
func tokenEqual(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Package web is the setup page of the box: an office admin configures
// everything from a browser on the LAN. It is a client of the control API
// (package control), called in process; every form is one op or a few,
// and every error an op reports about a field is shown next to that field.
//
// Pages are html/template (output escaped everywhere) with one layout and
// one style sheet, embedded in the binary; no JavaScript, no CDN. Security:
// a login with the admin password (op admin.check: bounded hashing and the
// failed-login back-off), server-side sessions in a cookie that is
// HttpOnly, SameSite=Strict and Secure over HTTPS, a CSRF token in every
// form (a pre-session token for the login and setup forms), a check of the
// Origin of every POST, security headers (a Content-Security-Policy without
// inline script or style, no framing) and bounded request bodies.
package web

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"concierge/appliance/control"
)

// Limits of requests, named here and nowhere else.
const (
	// MaxFormBytes bounds the body of an ordinary form.
	MaxFormBytes = 64 << 10
	// MaxRestoreBytes bounds an uploaded backup file.
	MaxRestoreBytes = 1 << 20
	// OpTimeout bounds one op called for a request.
	OpTimeout = 30 * time.Second
	// LogLines is how many recent log lines the status page shows.
	LogLines = 50
)

// The timeouts of the HTTP servers (see NewHTTPServer).
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 60 * time.Second // a backup upload on a slow link
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 16 << 10
)

// Security headers sent with every answer.
const (
	ContentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'"
	ReferrerPolicy        = "same-origin"
)

// Options configure a Server.
type Options struct {
	// Control runs the ops: a *control.Service in the server.
	Control control.Caller
	Log     *slog.Logger
	// Now is the clock of sessions; nil means time.Now.
	Now func() time.Time
	// Restart is called (in its own goroutine, after the answer went
	// out) when the admin asks for a restart; nil means the op restart.
	Restart func()
}

// Server is the setup page: an http.Handler. Its sessions live as long as
// the Server, across listener changes and service restarts.
type Server struct {
	ctl      control.Caller
	log      *slog.Logger
	sessions *sessions
	pages    *pages
	restart  func()
	origin   *http.CrossOriginProtection
	// setupDone caches setup.state once it says done (it never goes back).
	setupDone atomic.Bool
	mux       *http.ServeMux
}

// New returns the setup page.
func New(opt Options) *Server {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ctl:      opt.Control,
		log:      opt.Log,
		sessions: newSessions(opt.Now),
		pages:    loadPages(),
		restart:  opt.Restart,
		origin:   http.NewCrossOriginProtection(),
	}
	if s.restart == nil {
		s.restart = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := s.ctl.Call(ctx, control.OpRestart, nil, nil); err != nil {
				s.log.Error("restart", "err", err)
			}
		}
	}
	s.mux = s.routes()
	return s
}

// NewHTTPServer returns an http.Server for h with the page's timeouts and
// header limit.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// public are the paths served without a login.
var public = map[string]bool{"/login": true, "/setup": true, "/style.css": true}

// ServeHTTP checks the login and the CSRF token, then serves the page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", ReferrerPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("web: panic", "path", r.URL.Path, "panic", v)
			http.Error(w, "Something went wrong on the box; please try again.", http.StatusInternalServerError)
		}
	}()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if err := s.origin.Check(r); err != nil {
			forbidden(w, "This form came from another site and was refused.")
			return
		}
		limit := int64(MaxFormBytes)
		switch r.URL.Path {
		case "/maintenance/restore":
			limit = MaxRestoreBytes + MaxFormBytes // the file and the multipart framing
		case "/firmware/apply":
			limit = MaxBundleBytes + MaxFormBytes
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "Method not allowed.", http.StatusMethodNotAllowed)
		return
	}
	if public[r.URL.Path] {
		s.mux.ServeHTTP(w, r)
		return
	}
	sess := s.sessions.get(r)
	if sess == nil {
		if r.Method == http.MethodPost {
			forbidden(w, "You are not logged in (or the session ended). Log in again.")
			return
		}
		to := "/login"
		if done, err := s.isSetupDone(r.Context()); err == nil && !done {
			to = "/setup"
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost {
		if err := parseForm(r); err != nil {
			tooLarge(w, err)
			return
		}
		if !tokenEqual(r.PostFormValue("csrf"), sess.csrf) {
			forbidden(w, "This form has expired. Go back, reload the page and try again.")
			return
		}
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

// parseForm reads a POST body: a urlencoded form, or a multipart one (the
// backup upload), within the body limit set before.
func parseForm(r *http.Request) error {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return r.ParseMultipartForm(MaxRestoreBytes + MaxFormBytes)
	}
	return r.ParseForm()
}

func tooLarge(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		http.Error(w, "What you sent is too large.", http.StatusRequestEntityTooLarge)
		return
	}
	http.Error(w, "The form could not be read.", http.StatusBadRequest)
}

func forbidden(w http.ResponseWriter, msg string) {
	http.Error(w, msg, http.StatusForbidden)
}

// clientIP is the address of the browser (the page trusts no proxy
// headers: it is reached directly on the LAN).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// isSetupDone asks the control API whether the first-run wizard is done.
func (s *Server) isSetupDone(ctx context.Context) (bool, error) {
	if s.setupDone.Load() {
		return true, nil
	}
	var st control.SetupState
	if err := s.ctl.Call(ctx, control.OpSetupState, nil, &st); err != nil {
		return false, err
	}
	if st.Done {
		s.setupDone.Store(true)
	}
	return st.Done, nil
}

// staticFS holds style.css.
func (s *Server) serveStyle(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(assets, "static/style.css")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(b)
}

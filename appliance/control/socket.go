package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SocketFile is the control socket's file in the data directory.
const SocketFile = "control.sock"

// Limits of the socket.
const (
	// MaxRequestSize bounds a request (a restore carries a backup).
	MaxRequestSize = MaxBackupSize + 64<<10
	// MaxOpNameLen and MaxArgs bound the op name and the argument count.
	MaxOpNameLen = 64
	MaxArgs      = 16
	// DialTimeout bounds the CLI's wait for the socket to answer.
	DialTimeout = 2 * time.Second
	// ReadTimeout bounds the reading of one request.
	ReadTimeout = 10 * time.Second
	// CallTimeout bounds one call over the socket (events.wait waits up
	// to MaxEventWait).
	CallTimeout = MaxEventWait + time.Minute
)

// CallPath is the HTTP path of a call.
const CallPath = "/v1/call"

// Request is the body of a call over the socket.
type Request struct {
	Op   string `json:"op"`
	Args Args   `json:"args,omitempty"`
}

// Response is the body of the answer: a result or an error.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// DecodeRequest reads one request and checks its shape (the op and its
// arguments are checked by Call).
func DecodeRequest(r io.Reader) (*Request, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRequestSize+1))
	if err != nil {
		return nil, fmt.Errorf("control: reading the request: %w", err)
	}
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("control: request larger than %d bytes", MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("control: bad request: %v", err)
	}
	if dec.More() {
		return nil, errors.New("control: bad request: more than one JSON value")
	}
	if req.Op == "" || len(req.Op) > MaxOpNameLen {
		return nil, errors.New("control: bad request: no op, or a name too long")
	}
	if len(req.Args) > MaxArgs {
		return nil, fmt.Errorf("control: bad request: more than %d arguments", MaxArgs)
	}
	return &req, nil
}

// Listener serves a Service on the data directory's control socket.
type Listener struct {
	path string
	srv  *http.Server
	done chan struct{}
}

type peerKey struct{}

// Listen opens DATA/control.sock (mode 0600), replacing a stale socket,
// and serves svc on it until Close. Only root and the server's own user
// may call: each connection's peer is checked with SO_PEERCRED. The
// caller makes sure one server runs per data directory.
func Listen(dataDir string, svc *Service) (*Listener, error) {
	path := filepath.Join(dataDir, SocketFile)
	os.Remove(path)
	old := syscall.Umask(0o177) // no window in which others may connect
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	cl := &Listener{path: path, done: make(chan struct{})}
	cl.srv = &http.Server{
		Handler:           Handler(svc),
		ReadHeaderTimeout: ReadTimeout,
		ReadTimeout:       ReadTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerAllowed(c))
		},
		ErrorLog: nil,
	}
	go func() {
		defer close(cl.done)
		cl.srv.Serve(l)
	}()
	return cl, nil
}

// Close stops serving, ending calls in progress, and removes the socket.
func (l *Listener) Close() error {
	err := l.srv.Close()
	<-l.done
	os.Remove(l.path)
	return err
}

// peerAllowed reports whether the peer of a unix connection is root or
// the server's own user.
func peerAllowed(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Getuid()
}

// Handler serves calls of svc: POST CallPath with a Request.
func Handler(svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allowed, ok := r.Context().Value(peerKey{}).(bool); ok && !allowed {
			reply(w, http.StatusForbidden, nil, Errorf(CodeUnauthorized, "only root may use the control socket"))
			return
		}
		if r.URL.Path != CallPath || r.Method != http.MethodPost {
			reply(w, http.StatusNotFound, nil, Errorf(CodeNotFound, "POST %s only", CallPath))
			return
		}
		req, err := DecodeRequest(r.Body)
		if err != nil {
			reply(w, http.StatusBadRequest, nil, Errorf(CodeInvalid, "%v", err))
			return
		}
		v, err := svc.call(r.Context(), req.Op, req.Args)
		if err != nil {
			reply(w, http.StatusOK, nil, toError(err, nil))
			return
		}
		reply(w, http.StatusOK, v, nil)
	})
}

func reply(w http.ResponseWriter, status int, v any, e *Error) {
	resp := Response{Error: e}
	if e == nil {
		b, err := json.Marshal(v)
		if err != nil {
			resp.Error = Errorf(CodeInternal, "encoding the result: %v", err)
		} else {
			resp.Result = b
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(resp)
}

// Client calls the ops of a server over its control socket.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, http: &http.Client{
		Timeout: CallTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := net.Dialer{Timeout: DialTimeout}
				return d.DialContext(ctx, "unix", path)
			},
		},
	}}
}

// Call runs op on the server. Every error is an *Error; one of the
// socket itself is CodeUnavailable.
func (c *Client) Call(ctx context.Context, op string, args Args, result any) error {
	body, _ := json.Marshal(Request{Op: op, Args: args})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://concierge"+CallPath, bytes.NewReader(body))
	if err != nil {
		return Errorf(CodeInternal, "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Errorf(CodeUnavailable, "control socket %s: %v", c.path, err)
	}
	defer resp.Body.Close()
	var r Response
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxRequestSize)).Decode(&r); err != nil {
		return Errorf(CodeInternal, "control socket: bad answer (HTTP %d): %v", resp.StatusCode, err)
	}
	if r.Error != nil {
		return r.Error
	}
	if result != nil && r.Result != nil {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return Errorf(CodeInternal, "%s: result: %v", op, err)
		}
	}
	return nil
}

// Open returns a client of the server running on dataDir when one
// answers on its socket, else a Service working on the data directory
// alone (settings, queue and backup work; live-only ops answer
// ErrNotRunning).
func Open(dataDir string) (Caller, error) {
	path := filepath.Join(dataDir, SocketFile)
	c, err := net.DialTimeout("unix", path, DialTimeout)
	switch {
	case err == nil:
		c.Close()
		return NewClient(path), nil
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return New(Options{DataDir: dataDir}), nil
	default:
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
}

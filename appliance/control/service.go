package control

import (
	"context"
	"log/slog"
)

// Options configure a Service.
type Options struct {
	// DataDir is the data directory (settings, queue, SRS key).
	DataDir string
	// Live is the running server; nil when the Service works on the
	// data directory alone (the CLI with no server running).
	Live Live
	Log  *slog.Logger
}

// Live is what the running server (the supervisor in package appliance)
// gives the control API.
type Live interface{}

// Service runs the ops. It is safe for concurrent use.
type Service struct {
	opt Options
}

// New returns a Service.
func New(opt Options) *Service { return &Service{opt: opt} }

// Call runs op with args and decodes its result into result (a pointer,
// or nil).
func (s *Service) Call(ctx context.Context, op string, args Args, result any) error {
	return Errorf(CodeInternal, "%s: not implemented", op)
}

// Open returns a client of the server running on dataDir when one answers
// on its socket, else a Service working on the data directory alone.
func Open(dataDir string) (Caller, error) {
	return New(Options{DataDir: dataDir}), nil
}

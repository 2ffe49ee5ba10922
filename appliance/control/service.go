package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"concierge/appliance/config"
	"concierge/appliance/diag"
	"concierge/appliance/timesync"
	"concierge/internal/authlimit"
	"concierge/internal/pwhash"
	"concierge/smtpd/queue"
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
type Live interface {
	// Reload reads the settings file and the SRS key, reconfigures every
	// service and publishes EventSettingsApplied; it returns the new
	// generation. A file with errors, or a service that refuses the
	// settings, leaves an error (the settings in force stay as they
	// were, as far as the services allow).
	Reload(ctx context.Context) (int, error)
	// Restart stops every service and starts them again with the
	// settings file.
	Restart(ctx context.Context) error
	// Status describes the services.
	Status() Status
	// NBTNames is the state of the NetBIOS name service.
	NBTNames() NBTNames
	// DHCP is the state of the LAN's DHCP server.
	DHCP() DHCPStatus
	// NBT is the session and datagram services (nbt.sessions, nbt.send).
	NBT() NBTLive
	// RecentLog returns the last n log lines, oldest first.
	RecentLog(n int) []LogLine
	// Runner is the queue runner of the delivery service (nil while it
	// does not run).
	Runner() QueueRunner
	// Network is the box's network interfaces (network ops).
	Network() Network
	// Link is the dial-out link service (link.go).
	Link() LinkControl
	// Firmware is the running firmware and its slots (firmware.status).
	Firmware() FirmwareStatus
	// TimeStatus is the state of the clock's time keeping (time.status).
	TimeStatus() timesync.Status
	// Reboot stops the services and reboots the box, shortly after it
	// returned (so that the answer goes out); an error when the server
	// is not the firmware of a box (ErrNotOnBox).
	Reboot() error
	// PowerOff stops the services and switches the box off, shortly
	// after it returned; ErrNotOnBox as Reboot.
	PowerOff() error
	// CheckAdmin checks the admin password against hash through the
	// login limiter and password check of mail logins.
	CheckAdmin(ctx context.Context, hash, password string, ip netip.Addr) error
}

// QueueRunner is what the queue ops need of the running delivery service
// (smtpd/queue.Runner).
type QueueRunner interface {
	Flush(domain string) int
	Retry(id string) error
	Delete(id string) error
}

// Service runs the ops. It is safe for concurrent use.
type Service struct {
	opt    Options
	store  *config.Store
	events *events

	// edit serialises settings edits of this process with their
	// reconfiguration (Store.Update locks the file against others).
	edit sync.Mutex
	// admin is the login limiter of admin.check with no server running.
	admin *authlimit.Limiter
	// diagLast is the report of the last check.dns.
	diagLast atomic.Pointer[diag.Report]
}

// New returns a Service.
func New(opt Options) *Service {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{opt: opt, store: &config.Store{Dir: opt.DataDir}, events: newEvents(), admin: &authlimit.Limiter{}}
}

// Running reports whether the Service is the running server's.
func (s *Service) Running() bool { return s.opt.Live != nil }

// Publish records an event of kind and wakes its waiters; it returns the
// event's generation (1 for the first event of the kind).
func (s *Service) Publish(kind string) int { return s.events.publish(kind) }

// opFunc runs an op; its result is encoded as JSON.
type opFunc func(s *Service, ctx context.Context, a Args) (any, error)

// opDef is one op of the table.
type opDef struct {
	args []string // the argument names it takes (all optional to the transport)
	live bool     // needs the running server
	run  opFunc
	// fields renames the fields of config errors to argument names;
	// "*" catches every other field.
	fields map[string]string
}

// ops is the table of every op. It is filled in init by register (the
// ops refer to Service methods that refer back to the table through
// Call); each feature registers its ops from a file of its own.
var ops = map[string]opDef{}

// register adds ops to the table; a name registered twice is a bug.
func register(add map[string]opDef) {
	for name, d := range add {
		if _, dup := ops[name]; dup {
			panic("control: op " + name + " registered twice")
		}
		ops[name] = d
	}
}

// Ops lists the op names, sorted.
func Ops() []string { return sortedKeys(ops) }

// Call runs op with args and decodes its result into result (a pointer,
// or nil). Every error is an *Error.
func (s *Service) Call(ctx context.Context, op string, args Args, result any) error {
	v, err := s.call(ctx, op, args)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	// Through JSON, so that in process and over the socket give the
	// same values.
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, result)
	}
	if err != nil {
		return Errorf(CodeInternal, "%s: result: %v", op, err)
	}
	return nil
}

// call runs an op and returns its result unencoded.
func (s *Service) call(ctx context.Context, op string, args Args) (any, error) {
	d, ok := ops[op]
	if !ok {
		return nil, Errorf(CodeInvalid, "unknown op %q", op)
	}
	for name := range args {
		if !slices.Contains(d.args, name) {
			return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("%s: unknown argument %q", op, name)}
		}
	}
	if d.live && s.opt.Live == nil {
		return nil, ErrNotRunning
	}
	v, err := d.run(s, ctx, args)
	if err != nil {
		return nil, toError(err, d.fields)
	}
	return v, nil
}

// toError turns any error of an op into an *Error: config errors are
// invalid, with their fields renamed to argument names.
func toError(err error, rename map[string]string) *Error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	var list config.Errors
	var fe *config.FieldError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &fe):
		list = config.Errors{fe}
	case strings.HasPrefix(err.Error(), "password: "): // config.CheckPassword
		list = config.Errors{err}
	case errors.Is(err, queue.ErrBadID):
		return &Error{Code: CodeInvalid, Message: err.Error(), Fields: map[string]string{"id": err.Error()}}
	case errors.Is(err, authlimit.ErrBadCredentials):
		return &Error{Code: CodeUnauthorized, Message: "wrong password", Fields: map[string]string{"password": "wrong password"}}
	case errors.Is(err, authlimit.ErrTryLater):
		msg := "too many wrong passwords; try again later"
		return &Error{Code: CodeUnauthorized, Message: msg, Fields: map[string]string{"password": msg}}
	case errors.Is(err, ErrNoMessage), errors.Is(err, queue.ErrUnknownID):
		return &Error{Code: CodeNotFound, Message: err.Error()}
	default:
		return &Error{Code: CodeInternal, Message: err.Error()}
	}
	e := &Error{Code: CodeInvalid, Message: err.Error(), Fields: map[string]string{}}
	for _, one := range list {
		field := "password"
		if fe, ok := one.(*config.FieldError); ok {
			field = fe.Field
		}
		base, _, _ := strings.Cut(field, "[") // a list's element: "dhcp.wins[1]"
		if f, ok := rename[field]; ok {
			field = f
		} else if f, ok := rename[base]; ok {
			field = f
		} else if f, ok := rename["*"]; ok {
			field = f
		}
		if prev, ok := e.Fields[field]; ok {
			e.Fields[field] = prev + "; " + one.Error()
		} else {
			e.Fields[field] = one.Error()
		}
	}
	return e
}

// list splits a comma-separated list argument.
func list(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// invalid is an *Error of one field.
func invalid(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: CodeInvalid, Message: msg, Fields: map[string]string{field: msg}}
}

// checkAdmin is admin.check: through the server's login limiter, or a
// limiter of this Service when no server runs.
func (s *Service) checkAdmin(ctx context.Context, hash, password string, ip netip.Addr) error {
	if s.opt.Live != nil {
		return s.opt.Live.CheckAdmin(ctx, hash, password, ip)
	}
	return s.admin.Attempt(ctx, ip, AdminLogin, func(ctx context.Context, suspect bool) (bool, error) {
		prio := pwhash.Normal
		if suspect {
			prio = pwhash.Suspect
		}
		return pwhash.Default.Verify(ctx, prio, hash, password)
	})
}

// AdminLogin is the name admin logins are counted under by the login
// limiter: not a valid user name, so a mail user "admin" is another.
const AdminLogin = "(admin)"

package appliance

import (
	"context"
	"log/slog"
	"path/filepath"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

// Service is one thing the supervisor runs: the SMTP server, the POP3
// server, the NetBIOS name service, and so on. The supervisor starts every
// service with the configuration, hands each new configuration to
// Reconfigure while running, and stops them all on shutdown.
type Service interface {
	// Name is a short lower-case name for logs ("smtp", "pop3", "nbt").
	Name() string
	// Start opens the service's sockets and serves in the background. It
	// returns once the service accepts traffic, or with an error.
	Start(ctx context.Context, cfg *config.Config) error
	// Reconfigure applies a changed configuration without dropping
	// established sessions; listeners whose address changed are reopened.
	Reconfigure(cfg *config.Config) error
	// Stop shuts the service down, waiting for in-flight work until ctx
	// is done and then forcing connections closed.
	Stop(ctx context.Context) error
	// Listening lists where the service listens, e.g. "smtp 0.0.0.0:25".
	Listening() []string
}

// Env is what every service gets from the appliance.
type Env struct {
	DataDir string
	Log     *slog.Logger
	// Users checks logins against the live configuration: the one
	// login check every service uses.
	Users *Users
	// SRSKey is the secret of sender rewriting for forwarded mail (see
	// smtpd/srs), made at the box's first start; nil turns SRS off.
	SRSKey []byte
	// Store and Queue are opened by the SMTP service (started first) and
	// shared with the services that deliver mail out and bounce it.
	Store *store.Store
	Queue *queue.Queue
	// Control is the control API of the box (appliance/control): the
	// setup page calls it, and services publish their events on it.
	Control *control.Service
	// Net is whether settings reach the network interfaces and the
	// change of address on trial (see network.go).
	Net *netState
	// Link is the dial-out link service (gate of the delivery runner,
	// spool of the SMTP server); set when the services are made.
	Link *linkService
}

// MailDir is the Maildir of a user.
func (e *Env) MailDir(user string) string {
	return filepath.Join(e.DataDir, "mail", user)
}

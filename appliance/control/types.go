package control

import (
	"encoding/json"
	"time"

	"concierge/nbt/nameservice"
)

// Applied is the result of a settings edit.
type Applied struct {
	// Live is true when a running server applied the change; then
	// Generation is the settings-applied event's generation.
	Live       bool `json:"live"`
	Generation int  `json:"generation,omitempty"`
}

// ConfigKey is one key of "config set" with its value (secrets read
// "(set, hidden)").
type ConfigKey struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ConfigCheck is the result of config.check.
type ConfigCheck struct {
	Path string `json:"path"`
}

// DomainEntry is one mail domain.
type DomainEntry struct {
	Name    string `json:"name"`
	AliasOf string `json:"alias_of,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// UserEntry is one user with the addresses that reach it.
type UserEntry struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
}

// AliasEntry is one alias; an address "@domain" is a catch-all.
type AliasEntry struct {
	Address  string   `json:"address"`
	Targets  []string `json:"targets"`
	CatchAll bool     `json:"catch_all,omitempty"`
}

// SetupState says whether the first-run wizard is done (the admin
// password is set).
type SetupState struct {
	Done     bool   `json:"done"`
	Hostname string `json:"hostname,omitempty"`
}

// BackupFormat names the backup document.
const BackupFormat = "concierge-backup"

// Backup is the whole configuration of the box: the settings file (with
// the password hashes and secrets) and the SRS key.
type Backup struct {
	Format   string          `json:"format"` // BackupFormat
	Version  int             `json:"version"`
	Created  time.Time       `json:"created"`
	Settings json.RawMessage `json:"settings"`
	SRSKey   []byte          `json:"srs_key,omitempty"` // base64 in JSON
}

// QueuedMessage is a queued message.
type QueuedMessage struct {
	ID          string            `json:"id"`
	From        string            `json:"from"`
	Size        int64             `json:"size"`
	Received    time.Time         `json:"received"`
	NextAttempt time.Time         `json:"next_attempt"`
	User        string            `json:"user,omitempty"`
	Warned      bool              `json:"warned,omitempty"`
	Recipients  []QueuedRecipient `json:"recipients"`
	// Headers of the message (queue.show only), with LF line ends.
	Headers string `json:"headers,omitempty"`
}

// QueuedRecipient is one recipient of a queued message.
type QueuedRecipient struct {
	Addr      string    `json:"addr"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	LastTry   time.Time `json:"last_try,omitzero"`
	RemoteMTA string    `json:"remote_mta,omitempty"`
}

// QueueChange says what a queue change did.
type QueueChange struct {
	// Live is true when the running server made it (its runner tries the
	// messages now).
	Live bool `json:"live"`
	// Messages counts the messages changed.
	Messages int `json:"messages"`
}

// NBTNames is the state of the NetBIOS name service.
type NBTNames struct {
	Enabled bool `json:"enabled"`
	// Status is nil while the service waits for a LAN interface.
	Status *nameservice.Status `json:"status,omitempty"`
}

// Status is the state of the running server.
type Status struct {
	Version    string          `json:"version"`
	Started    time.Time       `json:"started"`
	Uptime     string          `json:"uptime"` // e.g. "3h2m1s"
	Generation int             `json:"generation"`
	Services   []ServiceStatus `json:"services"`
	// QueueLength counts the messages in the outbound queue.
	QueueLength int `json:"queue_length"`
	// Memory is the server process's (nil when it cannot be read).
	Memory *Memory `json:"memory,omitempty"`
}

// ServiceStatus is one service of the supervisor.
type ServiceStatus struct {
	Name      string            `json:"name"`
	Up        bool              `json:"up"`
	Listening []string          `json:"listening"`
	Counters  map[string]uint64 `json:"counters,omitempty"`
}

// LogLine is one line of the server's log.
type LogLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
	// Text is the whole line as the log file has it.
	Text string `json:"text"`
}

// Event is a readiness event.
type Event struct {
	Kind       string    `json:"kind"`
	Generation int       `json:"generation"`
	Time       time.Time `json:"time"`
}

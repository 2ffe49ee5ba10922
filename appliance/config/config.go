// Package config holds the appliance's settings: one human-readable JSON
// file in the data directory, its defaults, validation that reports every
// error at once, and atomic saving. The CLI and the setup page both change
// settings through Store.Update; services never import this package (the
// appliance copies settings onto them).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SchemaVersion is the version of the file format written by this build.
const SchemaVersion = 1

// Config is the whole configuration of the box.
type Config struct {
	Version int `json:"version"`
	// Hostname is the box's fully qualified domain name, used in the SMTP
	// banner, Received: headers and the TLS certificate.
	Hostname string `json:"hostname"`
	// Domains are the mail domains; the first is primary and users'
	// addresses are NAME@primary (and NAME@ each domain that is an alias of
	// the primary).
	Domains []Domain `json:"domains"`
	// Users are the mailbox owners; Hash is an argon2id or bcrypt hash.
	Users []User `json:"users"`
	// Aliases map one address (or "@domain" for a catch-all) to local
	// users or remote addresses.
	Aliases []Alias `json:"aliases"`
	// RelayNetworks may relay without AUTH (CIDRs). Default: none.
	RelayNetworks []string `json:"relay_networks"`
	// Postmaster is the user who receives postmaster@ mail and bounces;
	// empty means the first user.
	Postmaster string `json:"postmaster,omitempty"`

	SMTP     SMTP     `json:"smtp"`
	Delivery Delivery `json:"delivery"`
	Link     Link     `json:"link"`
	POP3     POP3     `json:"pop3"`
	NBT      NBT      `json:"nbt"`
	Web      Web      `json:"web"`
	Network  Network  `json:"network"`
	Admin    Admin    `json:"admin"`
	DHCP     DHCP     `json:"dhcp"`
	Diag     Diag     `json:"diag"`
	Time     Time     `json:"time"`
}

// Domain is one mail domain.
type Domain struct {
	Name    string `json:"name"`
	AliasOf string `json:"alias_of,omitempty"`
}

// User is one mailbox owner.
type User struct {
	Name string `json:"name"`
	Hash string `json:"hash" secret:"true"`
}

// Alias delivers Address to Targets.
type Alias struct {
	Address string   `json:"address"`
	Targets []string `json:"targets"`
}

// Admin holds the login of the setup page. An empty PasswordHash means
// the first-run setup is not done yet.
type Admin struct {
	PasswordHash string `json:"password_hash" secret:"true"`
}

// Default returns the configuration a new box starts with.
func Default() *Config {
	return &Config{
		Version:  SchemaVersion,
		Hostname: "concierge.office.lan",
		SMTP:     DefaultSMTP(),
		Delivery: DefaultDelivery(),
		Link:     DefaultLink(),
		POP3:     DefaultPOP3(),
		NBT:      DefaultNBT(),
		Web:      DefaultWeb(),
		DHCP:     DefaultDHCP(),
		Network:  DefaultNetwork(),
		Time:     DefaultTime(),
	}
}

// FieldError is a problem with one setting.
type FieldError struct {
	Field string // dotted path, e.g. "smtp.max_message_size" or "users[2].name"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Errors is a list of problems, printed one per line.
type Errors []error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Parse decodes and validates a configuration file. Unknown keys are an
// error (a typo must not be ignored). On validation failure it returns the
// decoded config and an Errors value listing every problem.
func Parse(data []byte) (*Config, error) {
	c := Default()
	c.Version = 0
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("config: %w", describeJSONError(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("config: unexpected data after the closing brace")
	}
	if errs := c.Validate(); len(errs) > 0 {
		return c, errs
	}
	return c, nil
}

// describeJSONError adds a line number to JSON syntax errors.
func describeJSONError(data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("line %d: %v", lineOf(data, se.Offset), err)
	case errors.As(err, &te):
		return fmt.Errorf("line %d: %s: expected %s, found %s", lineOf(data, te.Offset), te.Field, te.Type, te.Value)
	}
	return err
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// Marshal encodes the configuration as indented JSON.
func (c *Config) Marshal() []byte {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		panic(err) // only plain types: cannot fail
	}
	return append(b, '\n')
}

// Clone returns a deep copy.
func (c *Config) Clone() *Config {
	n, err := Parse(c.Marshal())
	if n == nil {
		panic(err)
	}
	return n
}

// Validate returns every problem in the configuration.
func (c *Config) Validate() Errors {
	var errs Errors
	add := func(e error) { errs = append(errs, e) }
	if c.Version != SchemaVersion {
		add(fieldErr("version", "is %d, this firmware reads version %d", c.Version, SchemaVersion))
	}
	if err := checkHostname(c.Hostname); err != nil {
		add(fieldErr("hostname", "%v", err))
	} else if !strings.Contains(c.Hostname, ".") {
		add(fieldErr("hostname", "%q is not a fully qualified name (it needs a dot, e.g. mail.example.com)", c.Hostname))
	}
	seenDom := map[string]bool{}
	for i, d := range c.Domains {
		f := fmt.Sprintf("domains[%d]", i)
		if err := checkDomainName(d.Name); err != nil {
			add(fieldErr(f+".name", "%v", err))
		}
		if seenDom[d.Name] {
			add(fieldErr(f+".name", "%q is listed twice", d.Name))
		}
		seenDom[d.Name] = true
		if err := c.checkAliasOf(d.Name, d.AliasOf, i == 0); err != nil {
			add(fieldErr(f+".alias_of", "%v", err))
		}
	}
	seenUser := map[string]bool{}
	for i, u := range c.Users {
		f := fmt.Sprintf("users[%d]", i)
		if err := checkUserName(u.Name); err != nil {
			add(fieldErr(f+".name", "%v", err))
		}
		if seenUser[u.Name] {
			add(fieldErr(f+".name", "%q is listed twice", u.Name))
		}
		seenUser[u.Name] = true
		if !IsPasswordHash(u.Hash) {
			add(fieldErr(f+".hash", "is not an argon2id or bcrypt hash"))
		}
	}
	if c.Postmaster != "" && !seenUser[c.Postmaster] {
		add(fieldErr("postmaster", "%q is not a user", c.Postmaster))
	}
	seenAlias := map[string]bool{}
	for i, a := range c.Aliases {
		f := fmt.Sprintf("aliases[%d]", i)
		if err := c.checkAliasAddress(a.Address); err != nil {
			add(fieldErr(f+".address", "%v", err))
		}
		if seenAlias[a.Address] {
			add(fieldErr(f+".address", "%q is listed twice", a.Address))
		}
		seenAlias[a.Address] = true
		if len(a.Targets) == 0 {
			add(fieldErr(f+".targets", "an alias needs at least one target"))
		}
		for j, tg := range a.Targets {
			if err := c.checkTarget(tg); err != nil {
				add(fieldErr(fmt.Sprintf("%s.targets[%d]", f, j), "%v", err))
			}
		}
	}
	errs = append(errs, checkTrustedNetworks("relay_networks", c.RelayNetworks)...)
	errs = append(errs, c.SMTP.validate("smtp")...)
	errs = append(errs, c.Delivery.validate("delivery")...)
	errs = append(errs, c.Link.validate("link", c)...)
	errs = append(errs, c.POP3.validate("pop3")...)
	errs = append(errs, c.NBT.validate("nbt")...)
	errs = append(errs, c.Web.validate("web")...)
	errs = append(errs, c.Network.validate("network")...)
	errs = append(errs, c.Diag.validate("diag")...)
	errs = append(errs, c.Time.validate("time")...)
	if h := c.Admin.PasswordHash; h != "" && !IsPasswordHash(h) {
		add(fieldErr("admin.password_hash", "is not an argon2id or bcrypt hash"))
	}
	errs = append(errs, c.DHCP.validate("dhcp")...)
	return errs
}

// Domain returns the named domain, or nil.
func (c *Config) Domain(name string) *Domain {
	for i := range c.Domains {
		if c.Domains[i].Name == name {
			return &c.Domains[i]
		}
	}
	return nil
}

// User returns the named user, or nil.
func (c *Config) User(name string) *User {
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i]
		}
	}
	return nil
}

// PrimaryDomain returns the first domain, or "" when none is set.
func (c *Config) PrimaryDomain() string {
	if len(c.Domains) == 0 {
		return ""
	}
	return c.Domains[0].Name
}

// PostmasterUser returns the user who receives postmaster mail, or "".
func (c *Config) PostmasterUser() string {
	if c.Postmaster != "" {
		return c.Postmaster
	}
	if len(c.Users) > 0 {
		return c.Users[0].Name
	}
	return ""
}

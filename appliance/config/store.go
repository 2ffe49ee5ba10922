package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"concierge/internal/durable"
)

// FileName is the configuration file's name inside the data directory.
const FileName = "concierge.json"

// Store is the configuration file of one data directory. Update is the only
// way settings are changed; it serialises writers with a lock file, so the
// CLI and the setup page can change settings while the server runs (the
// server notices the new file and reloads).
type Store struct {
	Dir string
}

// Path is the configuration file's path.
func (s *Store) Path() string { return filepath.Join(s.Dir, FileName) }

// Load reads and validates the configuration. A missing file yields the
// defaults. On validation errors it returns the config and an Errors value.
func (s *Store) Load() (*Config, error) {
	c, _, err := s.LoadDigest()
	return c, err
}

// LoadDigest is Load that also returns the SHA-256 of the file it read, in
// hex (of no bytes when the file is missing): the server logs it when it
// applies or refuses settings, so a test or a tool knows which edit is in
// force.
func (s *Store) LoadDigest() (*Config, string, error) {
	b, err := os.ReadFile(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		b, err = nil, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("config: %w", err)
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	if b == nil {
		return Default(), digest, nil
	}
	c, err := Parse(b)
	if err != nil {
		return c, digest, fmt.Errorf("%s:\n%w", s.Path(), err)
	}
	return c, digest, nil
}

// Update loads the configuration, applies fn, validates the result and
// saves it atomically. Nothing is written when fn or validation fails.
func (s *Store) Update(fn func(*Config) error) (*Config, error) {
	if err := durable.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(s.Dir, ".config.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("config: lock: %w", err)
	}
	c, err := s.Load()
	if err != nil {
		return nil, err
	}
	if err := fn(c); err != nil {
		return nil, err
	}
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errs
	}
	if err := durable.WriteFile(s.Path(), c.Marshal(), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// readOnlySubKeys are keys inside a section changed with their own
// command.
var readOnlySubKeys = map[string]string{"network.interfaces": "network set"}

// readOnlyKeys are changed with their own commands, not "config set".
var readOnlyKeys = map[string]string{
	"version": "", "domains": "domain", "users": "user", "aliases": "alias", "relay_networks": "relay",
	"admin": "admin passwd", // a whole command: see lookup
}

// Keys lists every key "config set" accepts.
func (c *Config) Keys() []string {
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if prefix == "" {
				if _, ro := readOnlyKeys[k]; ro {
					continue
				}
			}
			if _, ro := readOnlySubKeys[prefix+k]; ro {
				continue
			}
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			keys = append(keys, prefix+k)
		}
	}
	walk("", c.asMap())
	sort.Strings(keys)
	return keys
}

func (c *Config) asMap() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(c.Marshal(), &m); err != nil {
		panic(err)
	}
	// Optional keys that are empty are left out by omitempty; offer them.
	add := func(section string, keys ...string) {
		s, _ := m[section].(map[string]any)
		for _, k := range keys {
			if _, ok := s[k]; !ok {
				s[k] = ""
			}
		}
	}
	add("smtp", "tls_cert", "tls_key", "drop_dir")
	if _, ok := m["postmaster"]; !ok {
		m["postmaster"] = ""
	}
	return m
}

// Get returns the value of a key as "config set" would take it; a secret
// that is set reads as Hidden.
func (c *Config) Get(key string) (string, error) {
	parent, last, err := c.lookup(c.Redacted().asMap(), key)
	if err != nil {
		return "", err
	}
	return formatValue(parent[last]), nil
}

func formatValue(v any) string {
	switch v := v.(type) {
	case []any:
		var s []string
		for _, e := range v {
			s = append(s, fmt.Sprint(e))
		}
		return strings.Join(s, ",")
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func (c *Config) lookup(m map[string]any, key string) (map[string]any, string, error) {
	parts := strings.Split(key, ".")
	if hint, ro := readOnlySubKeys[key]; ro {
		return nil, "", fieldErr(key, "is changed with \"concierge %s\", not config set", hint)
	}
	if hint, ro := readOnlyKeys[parts[0]]; ro {
		if hint == "" {
			return nil, "", fieldErr(key, "cannot be set")
		}
		if !strings.Contains(hint, " ") {
			hint += " add|del"
		}
		return nil, "", fieldErr(key, "is changed with \"concierge %s\", not config set", hint)
	}
	cur := m
	for i, p := range parts {
		v, ok := cur[p]
		if !ok {
			return nil, "", fieldErr(key, "no such setting (see \"concierge config keys\")")
		}
		if i == len(parts)-1 {
			if _, isMap := v.(map[string]any); isMap {
				return nil, "", fieldErr(key, "is a section; set one of its keys")
			}
			return cur, p, nil
		}
		sub, ok := v.(map[string]any)
		if !ok {
			return nil, "", fieldErr(key, "no such setting")
		}
		cur = sub
	}
	return nil, "", fieldErr(key, "no such setting")
}

// Set changes one key, given as text: numbers, true/false, durations like
// 5m, lists separated by commas (an empty value clears a list). A value
// that makes the configuration invalid where it was valid (this key, or
// one that depends on it) is refused with those errors, and the
// configuration is left as it was.
func (c *Config) Set(key, value string) error {
	m := c.asMap()
	parent, last, err := c.lookup(m, key)
	if err != nil {
		return err
	}
	switch old := parent[last].(type) {
	case float64:
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fieldErr(key, "%q is not a whole number", value)
		}
		parent[last] = n
	case bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fieldErr(key, "%q is not true or false", value)
		}
		parent[last] = b
	case []any, nil:
		var list []string
		for _, e := range strings.Split(value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		parent[last] = list
	case string:
		parent[last] = value
	default:
		return fieldErr(key, "cannot be set from text (%T)", old)
	}
	b, _ := json.Marshal(m)
	n := Default()
	if err := json.Unmarshal(b, n); err != nil {
		return fieldErr(key, "%v", err)
	}
	if errs := newErrors(c.Validate(), n.Validate()); len(errs) > 0 {
		return errs
	}
	*c = *n
	return nil
}

// newErrors returns the errors in after that are not in before.
func newErrors(before, after Errors) Errors {
	old := map[string]bool{}
	for _, e := range before {
		old[e.Error()] = true
	}
	var errs Errors
	for _, e := range after {
		if !old[e.Error()] {
			errs = append(errs, e)
		}
	}
	return errs
}

// SortedUsers returns the user names in order.
func (c *Config) SortedUsers() []string {
	var names []string
	for _, u := range c.Users {
		names = append(names, u.Name)
	}
	slices.Sort(names)
	return names
}

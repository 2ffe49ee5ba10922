package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"concierge/appliance/config"
	"concierge/internal/durable"
	"concierge/smtpd/srs"
)

// SRSKeyFile is the SRS key's file in the data directory (see smtpd/srs).
const SRSKeyFile = "srs.key"

// BackupVersion is the version of the Backup document this firmware
// writes and reads.
const BackupVersion = 1

// MaxBackupSize bounds a backup document (a thousand users take some
// 200 kB).
const MaxBackupSize = 4 << 20

func (s *Service) keyPath() string { return filepath.Join(s.opt.DataDir, SRSKeyFile) }

// backup returns the settings file as the box runs it (secrets kept) and
// the SRS key.
func (s *Service) backup(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	b := Backup{Format: BackupFormat, Version: BackupVersion, Created: time.Now().UTC(), Settings: c.Marshal()}
	key, err := os.ReadFile(s.keyPath())
	switch {
	case err == nil:
		b.SRSKey = key
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return b, nil
}

// ParseBackup reads and checks a backup document: its settings must be
// valid for this firmware and its key of the right size.
func ParseBackup(data []byte) (*Backup, *config.Config, error) {
	if len(data) > MaxBackupSize {
		return nil, nil, fmt.Errorf("backup: larger than %d bytes", MaxBackupSize)
	}
	var b Backup
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, nil, fmt.Errorf("backup: not a Concierge backup file: %v", err)
	}
	if b.Format != BackupFormat {
		return nil, nil, fmt.Errorf("backup: not a Concierge backup file (format %q)", b.Format)
	}
	if b.Version != BackupVersion {
		return nil, nil, fmt.Errorf("backup: version %d; this firmware reads version %d", b.Version, BackupVersion)
	}
	c, err := config.Parse(b.Settings)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: its settings:\n%w", err)
	}
	if b.SRSKey != nil && len(b.SRSKey) != srs.KeySize {
		return nil, nil, fmt.Errorf("backup: the SRS key is %d bytes, want %d", len(b.SRSKey), srs.KeySize)
	}
	return &b, c, nil
}

// restore checks the whole backup, then writes the settings and the SRS
// key (each atomically) and applies them to the running server; on an
// error there the previous files are put back.
func (s *Service) restore(ctx context.Context, a Args) (any, error) {
	b, c, err := ParseBackup([]byte(a["backup"]))
	if err != nil {
		var list config.Errors
		if errors.As(err, &list) {
			return nil, err // named by field
		}
		return nil, invalid("backup", "%v", err)
	}
	s.edit.Lock()
	defer s.edit.Unlock()
	prev, err := os.ReadFile(s.store.Path())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	prevKey, err := os.ReadFile(s.keyPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if _, err := s.store.Update(func(cur *config.Config) error { *cur = *c; return nil }); err != nil {
		return nil, err
	}
	newKey := b.SRSKey != nil && !bytes.Equal(b.SRSKey, prevKey)
	if newKey {
		if err := durable.WriteFile(s.keyPath(), b.SRSKey, 0o600); err != nil {
			s.putBack(prev)
			return nil, err
		}
	}
	if s.opt.Live == nil {
		return Applied{}, nil
	}
	if !newKey {
		return s.apply(ctx, prev)
	}
	// The key is read by the services at their start.
	if err := s.opt.Live.Restart(ctx); err != nil {
		s.putBack(prev)
		if prevKey != nil {
			durable.WriteFile(s.keyPath(), prevKey, 0o600)
		}
		if rerr := s.opt.Live.Restart(ctx); rerr != nil {
			s.opt.Log.Error("control: the previous settings did not start again either", "err", rerr)
		}
		return nil, Errorf(CodeInvalid, "the services refused the backup (the previous settings are back): %v", err)
	}
	return Applied{Live: true, Generation: s.events.latestGeneration(EventSettingsApplied)}, nil
}

// putBack writes back the settings file read before an edit (nil: none).
func (s *Service) putBack(prev []byte) {
	if prev == nil {
		os.Remove(s.store.Path())
		return
	}
	durable.WriteFile(s.store.Path(), prev, 0o600)
}

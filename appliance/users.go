package appliance

import (
	"sync/atomic"

	"concierge/appliance/config"
)

// Users answers password checks against the live configuration; the
// supervisor swaps the configuration in on every reload.
type Users struct {
	cfg atomic.Pointer[config.Config]
}

// NewUsers returns a Users over cfg.
func NewUsers(cfg *config.Config) *Users {
	u := &Users{}
	u.cfg.Store(cfg)
	return u
}

func (u *Users) set(cfg *config.Config) { u.cfg.Store(cfg) }

// Verify reports whether password is the user's. An unknown user costs
// the same time as a wrong password.
func (u *Users) Verify(name, password string) bool {
	usr := u.cfg.Load().User(name)
	if usr == nil {
		config.DummyVerify(password)
		return false
	}
	return config.VerifyPassword(usr.Hash, password)
}

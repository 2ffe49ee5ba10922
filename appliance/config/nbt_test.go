package config

import (
	"testing"

	"concierge/nbt/nameservice"
)

// The NetBIOS service's defaults are written once, in nameservice; the
// settings start from the same values.
func TestNBTDefaultsAreTheService(t *testing.T) {
	d := DefaultNBT()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"name_ttl", d.NameTTL.D(), nameservice.DefaultNameTTL},
		{"wins_min_ttl", d.WINSMinTTL.D(), nameservice.DefaultWINSMinTTL},
		{"wins_max_ttl", d.WINSMaxTTL.D(), nameservice.DefaultWINSMaxTTL},
		{"wins_max_names_per_owner", d.WINSMaxNamesPerOwner, nameservice.DefaultMaxNamesPerOwner},
		{"save_interval", d.SaveInterval.D(), nameservice.DefaultSaveInterval},
		{"rate_limit", d.RateLimit, nameservice.DefaultRateLimit},
		{"rate_burst", d.RateBurst, nameservice.DefaultRateBurst},
		{"challenge_timeout", d.ChallengeTimeout.D(), nameservice.DefaultChallengeTimeout},
	} {
		if c.got != c.want {
			t.Errorf("nbt.%s defaults to %v, the service to %v", c.name, c.got, c.want)
		}
	}
}

package appliance

import (
	"testing"
	"time"

	"concierge/appliance/config"
	"concierge/appliance/link"
)

// The redial pause and its ceiling are settings: a file that does not
// name them gets the link manager's defaults, and set ones reach it.
func TestRedialWaitSettings(t *testing.T) {
	cfg, err := config.Parse([]byte(`{"version": 1, "hostname": "mx.example.test"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := linkSettings(cfg); s.RedialWait != link.DefaultRedialWait || s.MaxRedialWait != link.DefaultMaxRedialWait {
		t.Errorf("defaults: redial %s, at most %s", s.RedialWait, s.MaxRedialWait)
	}
	for k, v := range map[string]string{"link.redial_wait": "10s", "link.max_redial_wait": "2m"} {
		if err := cfg.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if s := linkSettings(cfg); s.RedialWait != 10*time.Second || s.MaxRedialWait != 2*time.Minute {
		t.Errorf("set 10s and 2m, got redial %s, at most %s", s.RedialWait, s.MaxRedialWait)
	}
	if err := cfg.Set("link.max_redial_wait", "5s"); err == nil {
		t.Error("a ceiling under the pause was accepted")
	}
}

package appliance

import (
	"testing"

	"concierge/appliance/config"
)

// smtp.local_sender_check is on unless turned off, and reaches the server.
func TestLocalSenderCheckSetting(t *testing.T) {
	s := &smtpService{env: &Env{DataDir: t.TempDir()}}
	cfg, err := config.Parse([]byte(`{"version": 1, "hostname": "mx.example.test"}`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := s.settings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if set.AllowOutsideLocalSenders {
		t.Error("the check is off in a file that does not mention it")
	}
	if err := cfg.Set("smtp.local_sender_check", "false"); err != nil {
		t.Fatal(err)
	}
	if set, err = s.settings(cfg); err != nil || !set.AllowOutsideLocalSenders {
		t.Errorf("smtp.local_sender_check false did not turn the check off (%v)", err)
	}
}

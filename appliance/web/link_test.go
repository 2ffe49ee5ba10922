package web

import (
	"net/http"
	"strings"
	"testing"

	"concierge/appliance/config"
	"concierge/appliance/control"
)

// The ISP link page: without a running server it shows the settings
// only; a refused setting comes back next to its field and changes
// nothing, a good form saves every field.
func TestLinkPageSettings(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	r := c.get("/link")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "The server is not running") {
		t.Fatalf("GET /link: %d\n%s", r.status, r.body)
	}
	r = c.submit("/link", "link-settings", map[string]string{"mode": "on-demand"})
	if r.status == http.StatusSeeOther || !strings.Contains(r.fieldErrors()["mode"], "mail host") {
		t.Fatalf("on-demand without a mail host: %d %v", r.status, r.fieldErrors())
	}
	c.submitOK("/link", "link-settings", map[string]string{"mode": "on-demand", "mail_host": "mx.isp.test:25", "idle_time": "2m",
		"up_command": "pon isp", "down_command": "poff isp", "redial_wait": "5m", "max_redial_wait": "1h", "relay_domains": "branch.test other.test", "etrn_networks": "10.1.2.3/32"})
	var cfg config.Config
	b.call(control.OpSettingsGet, nil, &cfg)
	l := cfg.Link
	if l.Mode != "on-demand" || l.MailHost != "mx.isp.test:25" || l.IdleTime.String() != "2m0s" || l.UpCommand != "pon isp" ||
		l.RedialWait.String() != "5m0s" || l.MaxRedialWait.String() != "1h0m0s" ||
		strings.Join(l.RelayDomains, ",") != "branch.test,other.test" || strings.Join(l.ETRNNetworks, ",") != "10.1.2.3/32" {
		t.Errorf("saved: %+v", l)
	}

	// A pause raised above its old ceiling, together with the ceiling:
	// the pause is refused until the ceiling is set, and then taken.
	c.submitOK("/link", "link-settings", map[string]string{"mode": "on-demand", "mail_host": "mx.isp.test:25", "redial_wait": "2h", "max_redial_wait": "3h"})
	b.call(control.OpSettingsGet, nil, &cfg)
	if l := cfg.Link; l.RedialWait.String() != "2h0m0s" || l.MaxRedialWait.String() != "3h0m0s" {
		t.Errorf("pause and ceiling raised together: saved %s and %s", l.RedialWait, l.MaxRedialWait)
	}
	// A ceiling under the pause is refused next to its field, and the
	// pause set in the same form is put back.
	r = c.submit("/link", "link-settings", map[string]string{"mode": "on-demand", "mail_host": "mx.isp.test:25", "redial_wait": "10m", "max_redial_wait": "5m"})
	if r.status == http.StatusSeeOther || !strings.Contains(r.fieldErrors()["max_redial_wait"], "shorter than link.redial_wait") {
		t.Fatalf("a ceiling under the pause: %d %v", r.status, r.fieldErrors())
	}
	b.call(control.OpSettingsGet, nil, &cfg)
	if l := cfg.Link; l.RedialWait.String() != "2h0m0s" || l.MaxRedialWait.String() != "3h0m0s" {
		t.Errorf("a refused form changed the pause: %s and %s", l.RedialWait, l.MaxRedialWait)
	}
}

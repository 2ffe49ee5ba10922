package appliance

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"concierge/appliance/config"
	"concierge/appliance/control"
)

// The web service follows the settings live: listeners open and close,
// plain HTTP answers the LAN (loopback here) or redirects to HTTPS with
// web.force_https, and the page's sessions survive a restart.
func TestWebServiceReconfigures(t *testing.T) {
	dir := t.TempDir()
	env := &Env{DataDir: dir, Log: slog.New(slog.DiscardHandler)}
	env.Control = control.New(control.Options{DataDir: dir, Log: env.Log})
	cfg := config.Default()
	cfg.Web = config.Web{HTTPSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"}
	s := newWebService(env).(*webService)
	if err := s.Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	urls := func() map[string]string {
		out := map[string]string{}
		for _, l := range s.Listening() {
			f := strings.Fields(l)
			out[f[1]] = f[2]
		}
		return out
	}
	u := urls()
	if !strings.HasPrefix(u["https"], "https://127.0.0.1:") || !strings.HasPrefix(u["http"], "http://127.0.0.1:") || u["dev"] != "" {
		t.Fatalf("listening: %v", s.Listening())
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url string) (int, string) {
		t.Helper()
		res, err := noRedirect.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("Location")
	}
	if code, loc := get(u["http"] + "users"); code != http.StatusSeeOther || loc != "/setup" {
		t.Errorf("plain HTTP from loopback: %d %s, want the page (a redirect to /setup)", code, loc)
	}

	// Force HTTPS: the same listener now redirects.
	cfg.Web.ForceHTTPS = true
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if code, loc := get(u["http"] + "users"); code != http.StatusFound || !strings.HasPrefix(loc, u["https"][:len("https://127.0.0.1:")]) || !strings.HasSuffix(loc, "/users") {
		t.Errorf("with force_https: %d %q, want a redirect to %susers", code, loc, u["https"])
	}
	// Off: the listener closes.
	cfg.Web.HTTPListen = ""
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := urls()["http"]; ok {
		t.Errorf("http listener still open: %v", s.Listening())
	}
	if _, err := http.Get(u["http"]); err == nil {
		t.Errorf("%s still answers", u["http"])
	}
	// A restart makes a new service with the same page.
	if newWebService(env).(*webService).page != s.page {
		t.Error("a restart of the services made a new setup page (and lost the sessions)")
	}
}

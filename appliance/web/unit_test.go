package web

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the sessions' clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func requestWith(id string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: id})
	return r
}

// Sessions end after SessionIdle without use and after SessionMaxAge in
// any case; at most MaxSessions live at once, the least recently used
// going first.
func TestSessionLimits(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	ss := newSessions(clk.now)
	id, s := ss.create()
	if len(id) != 43 || len(s.csrf) != 43 || id == s.csrf {
		t.Fatalf("id %q csrf %q: want two different 32-byte random values", id, s.csrf)
	}
	clk.add(SessionIdle - time.Second)
	if ss.get(requestWith(id)) == nil {
		t.Fatal("session ended before its idle time")
	}
	clk.add(SessionIdle - time.Second) // used just before: still alive
	if ss.get(requestWith(id)) == nil {
		t.Fatal("a session in use ended")
	}
	clk.add(SessionIdle + time.Second)
	if ss.get(requestWith(id)) != nil {
		t.Fatal("an idle session lives on")
	}
	id, _ = ss.create()
	for range int(SessionMaxAge / (SessionIdle / 2)) {
		clk.add(SessionIdle / 2)
		ss.get(requestWith(id))
	}
	clk.add(time.Minute)
	if ss.get(requestWith(id)) != nil {
		t.Fatal("a session lives past SessionMaxAge")
	}
	var ids []string
	for range MaxSessions + 3 {
		clk.add(time.Second)
		id, _ := ss.create()
		ids = append(ids, id)
	}
	if n := ss.count(); n != MaxSessions {
		t.Fatalf("%d sessions held, want at most %d", n, MaxSessions)
	}
	if ss.get(requestWith(ids[0])) != nil || ss.get(requestWith(ids[len(ids)-1])) == nil {
		t.Fatal("the oldest session should have made room for the newest")
	}
	if ss.get(requestWith("made-up")) != nil {
		t.Fatal("a made-up id found a session")
	}
}

func TestTokenEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"abc", "abc", true}, {"abc", "abd", false}, {"", "", false}, {"abc", "", false}, {"ab", "abc", false}} {
		if got := tokenEqual(c.a, c.b); got != c.want {
			t.Errorf("tokenEqual(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// Plain HTTP answers LAN clients only.
func TestLANOnly(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fd00::/64")}
	h := LANOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page")) }), func() []netip.Prefix { return nets })
	for addr, want := range map[string]int{
		"192.168.1.7:5000":          200,
		"[::ffff:192.168.1.7]:5000": 200,
		"[fd00::5]:5000":            200,
		"192.168.2.7:5000":          403,
		"8.8.8.8:5000":              403,
		"[2001:db8::1]:5000":        403,
		"garbage":                   403,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("client %s: %d, want %d", addr, w.Code, want)
		}
	}
	if !InNetworks("127.0.0.1", Loopback) || !InNetworks("::1", Loopback) {
		t.Error("loopback is not in Loopback")
	}
}

func TestRedirectHTTPS(t *testing.T) {
	for _, c := range []struct{ host, port, path, want string }{
		{"10.0.0.1", "443", "/users?x=1", "https://10.0.0.1/users?x=1"},
		{"10.0.0.1:80", "8443", "/", "https://10.0.0.1:8443/"},
		{"box.lan:80", "", "/login", "https://box.lan/login"},
		{"[fd00::1]:80", "443", "/", "https://[fd00::1]/"},
	} {
		r := httptest.NewRequest(http.MethodGet, c.path, nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		RedirectHTTPS(c.port).ServeHTTP(w, r)
		if got := w.Header().Get("Location"); w.Code != http.StatusFound || got != c.want {
			t.Errorf("%s%s → %d %q, want %q", c.host, c.path, w.Code, got, c.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Host = "evil.example/@x"
	w := httptest.NewRecorder()
	RedirectHTTPS("").ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("a Host with a slash: %d %q", w.Code, w.Header().Get("Location"))
	}
}

// listArg is the one piece of form text the page splits itself.
func FuzzListArg(f *testing.F) {
	for _, s := range []string{"anna, bob", "a,,b", " \n", "x@y.example\r\nz", "<script>alert(1)</script>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := listArg(s)
		if out == "" {
			return
		}
		for _, e := range strings.Split(out, ",") {
			if e == "" || strings.ContainsAny(e, " \t\r\n") {
				t.Fatalf("listArg(%q) = %q: empty entry or blank inside", s, out)
			}
			if !strings.Contains(s, e) {
				t.Fatalf("listArg(%q) = %q: %q was not typed", s, out, e)
			}
		}
	})
}

var update = flag.Bool("update", false, "rewrite the golden HTML in testdata/golden")

// csrfValue hides the random tokens of a page.
var csrfValue = regexp.MustCompile(`name="csrf" value="[^"]*"`)

// The HTML of the users and login pages, against golden files.
func TestGoldenPages(t *testing.T) {
	b := newTestBox(t, true)
	b.call("user.add", map[string]string{"name": "bob", "password": "Bob-River-Stone-93"}, nil)
	c := b.client()
	pages := map[string]string{"login": c.get("/login").body}
	c.mustLogin()
	pages["users"] = c.get("/users").body
	r := c.submit("/users", "user-add", map[string]string{"name": "Bad Name", "password": "Some-Good-Pass-77"})
	pages["users-error"] = r.body
	for name, body := range pages {
		got := csrfValue.ReplaceAllString(body, `name="csrf" value="TOKEN"`)
		file := filepath.Join("testdata", "golden", name+".html")
		if *update {
			os.MkdirAll(filepath.Dir(file), 0o755)
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test -run TestGoldenPages -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from %s (run with -update after checking):\n%s", name, file, got)
		}
	}
}

func TestLogTextDropsTimeAndLevel(t *testing.T) {
	logText := funcs["logText"].(func(string) string)
	for in, want := range map[string]string{
		`time=2026-11-30T21:52:22.337Z level=INFO msg=started users=0`: `msg=started users=0`,
		`msg="no time" a=b`: `msg="no time" a=b`,
		`time=x`:            `time=x`,
	} {
		if got := logText(in); got != want {
			t.Errorf("logText(%q) = %q, want %q", in, got, want)
		}
	}
}

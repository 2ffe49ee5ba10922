package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// The browser's limits: starting Chromium, and one command (an action with
// its page load; the driver's own timeout per action is 15s).
const (
	browserStartTimeout = 30 * time.Second
	commandTimeout      = 40 * time.Second
)

// updateScreenshots regenerates the screenshots committed under
// docs/screenshots from a passing run.
var updateScreenshots = os.Getenv("CONCIERGE_UPDATE_SCREENSHOTS") == "1"

// packageDir is this directory: driver.mjs and its node_modules.
func packageDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

func moduleRoot() string { return filepath.Join(packageDir(), "..", "..", "..") }

// requireBrowser fails the test unless Chromium, Node.js and
// playwright-core are installed (make test-deps installs them); under
// -short it skips, like every integration test.
func requireBrowser(t *testing.T, tools ...string) {
	t.Helper()
	testnet.Require(t, append([]string{"node", "/usr/bin/chromium"}, tools...)...)
	if _, err := os.Stat(filepath.Join(packageDir(), "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: %v (make test-deps runs npm ci there)", packageDir(), err)
	}
}

// artifacts returns the directory for this test's screenshots and
// downloads: $CONCIERGE_ARTIFACTS or test-artifacts/ at the top of the
// repository, then the test's name; it is emptied first and printed.
func artifacts(t *testing.T) string {
	t.Helper()
	root := os.Getenv("CONCIERGE_ARTIFACTS")
	if root == "" {
		root = filepath.Join(moduleRoot(), "test-artifacts")
	}
	dir := filepath.Join(root, t.Name())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	t.Logf("screenshots and downloads in %s", abs)
	return abs
}

// Browser is one headless Chromium on a LAN host, driven by driver.mjs.
type Browser struct {
	t     *testing.T
	proc  *testnet.Proc
	in    io.WriteCloser
	seq   int
	Shots string // the artifacts directory
	shots []string
}

// Page is what the driver reports after a page loads.
type Page struct {
	URL    string            `json:"url"`
	Path   string            `json:"path"`
	Status int               `json:"status"`
	Title  string            `json:"title"`
	Notice string            `json:"notice"`
	Errors map[string]string `json:"errors"`
}

// Row is one row of a table: its data-id, its cells and its text.
type Row struct {
	ID    string   `json:"id"`
	Cells []string `json:"cells"`
	Text  string   `json:"text"`
}

// StartBrowser starts Chromium on host h for the setup page at base (such
// as "http://10.77.50.1"), saving screenshots into dir.
func StartBrowser(t *testing.T, h *testnet.Host, base, dir string) *Browser {
	t.Helper()
	cmd := h.Command("node", filepath.Join(packageDir(), "driver.mjs"), base, dir)
	cmd.Dir = packageDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = r
	b := &Browser{t: t, in: w, Shots: dir}
	b.proc = testnet.StartCmd(t, cmd)
	r.Close()
	// Runs before StartCmd's cleanup: end of input closes the browser.
	t.Cleanup(func() {
		w.Close()
		b.proc.Wait(10 * time.Second)
	})
	// The first command answers once Chromium runs.
	var v struct{}
	if err := b.call(browserStartTimeout, map[string]any{"op": "viewport", "width": 1024, "height": 768}, &v); err != nil {
		t.Fatalf("chromium did not start: %v", err)
	}
	return b
}

// call sends one command and decodes its answer into result.
func (b *Browser) call(d time.Duration, cmd map[string]any, result any) error {
	line, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	b.seq++
	if _, err := fmt.Fprintf(b.in, "%s\n", line); err != nil {
		return fmt.Errorf("driver gone: %v\n%s", err, b.proc.Out.String())
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^=> %d (.*)$`, b.seq))
	var answer string
	ok := b.proc.WaitOutput(d, func(out string) bool {
		m := re.FindStringSubmatch(out)
		if m != nil {
			answer = m[1]
		}
		return m != nil
	})
	if !ok {
		return fmt.Errorf("no answer to %s within %v:\n%s", line, d, b.proc.Out.String())
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(answer), &e); e.Error != "" {
		return fmt.Errorf("%s: %s", line, e.Error)
	}
	return json.Unmarshal([]byte(answer), result)
}

// do is call with the command timeout; it fails the test on error.
func (b *Browser) do(cmd map[string]any, result any) {
	b.t.Helper()
	if err := b.call(commandTimeout, cmd, result); err != nil {
		b.t.Fatal(err)
	}
}

// Goto loads path and returns the page.
func (b *Browser) Goto(path string) Page {
	b.t.Helper()
	var p Page
	b.do(map[string]any{"op": "goto", "path": path}, &p)
	return p
}

// Submit fills form id (inside the element scope, when not empty) with
// fields, submits it and returns the page that follows.
func (b *Browser) Submit(id, scope string, fields map[string]string) Page {
	b.t.Helper()
	var p Page
	b.do(map[string]any{"op": "submit", "form": id, "scope": scope, "fields": fields}, &p)
	return p
}

// SubmitOK is Submit that fails the test if the page that follows shows
// a field error or an HTTP error.
func (b *Browser) SubmitOK(id, scope string, fields map[string]string) Page {
	b.t.Helper()
	p := b.Submit(id, scope, fields)
	if len(p.Errors) > 0 || p.Status >= 400 {
		b.Screenshot("failed-" + id)
		b.t.Fatalf("form %s %v: status %d, errors %v (notice %q)", id, fields, p.Status, p.Errors, p.Notice)
	}
	return p
}

// Table returns the rows of the table with the given id on the page.
func (b *Browser) Table(id string) []Row {
	b.t.Helper()
	var r struct{ Rows []Row }
	b.do(map[string]any{"op": "table", "id": id}, &r)
	return r.Rows
}

// Values returns the values a form shows in its fields (not passwords,
// hidden or file fields).
func (b *Browser) Values(id string) map[string]string {
	b.t.Helper()
	var r struct{ Values map[string]string }
	b.do(map[string]any{"op": "values", "form": id}, &r)
	return r.Values
}

// Links returns the href of every link that matches selector.
func (b *Browser) Links(selector string) []string {
	b.t.Helper()
	var r struct {
		Links []struct{ Href string }
	}
	b.do(map[string]any{"op": "links", "selector": selector}, &r)
	var out []string
	for _, l := range r.Links {
		out = append(out, l.Href)
	}
	return out
}

// Screenshot saves the whole page as NAME.png in the artifacts directory.
func (b *Browser) Screenshot(name string) {
	b.t.Helper()
	var r struct{ File string }
	b.do(map[string]any{"op": "screenshot", "name": name}, &r)
	b.shots = append(b.shots, name)
}

// Viewport resizes the page (a phone is 390×844).
func (b *Browser) Viewport(w, h int) {
	b.t.Helper()
	var r struct{}
	b.do(map[string]any{"op": "viewport", "width": w, "height": h}, &r)
}

// PublishScreenshots copies the named screenshots this test took into
// docs/screenshots when CONCIERGE_UPDATE_SCREENSHOTS=1 and the test passed.
func (b *Browser) PublishScreenshots(names ...string) {
	b.t.Helper()
	if !updateScreenshots || b.t.Failed() {
		return
	}
	dst := filepath.Join(moduleRoot(), "docs", "screenshots")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for _, name := range names {
		if !slices.Contains(b.shots, name) {
			b.t.Fatalf("no screenshot %q to publish", name)
		}
		data, err := os.ReadFile(filepath.Join(b.Shots, name+".png"))
		if err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name+".png"), data, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("updated docs/screenshots/%s.png", name)
	}
}

// rowWith returns the first row whose text contains every word, or nil.
func rowWith(rows []Row, words ...string) *Row {
	for i, r := range rows {
		all := true
		for _, w := range words {
			all = all && strings.Contains(r.Text, w)
		}
		if all {
			return &rows[i]
		}
	}
	return nil
}

// texts joins the rows' texts for failure messages.
func texts(rows []Row) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  [%s] %s\n", r.ID, strings.ReplaceAll(r.Text, "\n", " | "))
	}
	return b.String()
}

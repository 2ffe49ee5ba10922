package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/smtpd/queue"
)

// The box the tests set up.
const (
	testAdminPass = "Blue-Kettle-Morning-42"
	testDomain    = "example.test"
	testUser      = "alice"
	testUserPass  = "Garden-Path-Seven-7"
)

// testBox is the setup page over a real control Service on a temporary
// data directory.
type testBox struct {
	t    testing.TB
	dir  string
	ctl  *control.Service
	page *Server
	ts   *httptest.Server
}

func newTestBox(t testing.TB, setUp bool) *testBox {
	t.Helper()
	b := &testBox{t: t, dir: t.TempDir()}
	b.ctl = control.New(control.Options{DataDir: b.dir})
	b.page = New(Options{Control: b.ctl, Restart: func() {}})
	b.ts = httptest.NewServer(b.page)
	t.Cleanup(b.ts.Close)
	if setUp {
		b.call(control.OpSetupInit, control.Args{
			"admin_password": testAdminPass, "hostname": "mail." + testDomain, "domain": testDomain,
			"user": testUser, "password": testUserPass, "nbt_name": "OFFICEBOX", "workgroup": "OFFICE",
		}, nil)
	}
	return b
}

// call runs an op as the CLI does, failing the test on error.
func (b *testBox) call(op string, args control.Args, result any) {
	b.t.Helper()
	if err := b.ctl.Call(context.Background(), op, args, result); err != nil {
		b.t.Fatalf("%s %v: %v", op, args, err)
	}
}

// client is a browser: cookies, no automatic redirects.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
}

func (b *testBox) client() *client {
	jar, _ := cookiejar.New(nil)
	hc := b.ts.Client()
	c := &http.Client{Transport: hc.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &client{t: b.t, base: b.ts.URL, hc: c}
}

// response is an answer with its body parsed.
type response struct {
	status int
	header http.Header
	body   string
	doc    *html.Node
}

func (r *response) location() string { return r.header.Get("Location") }

func (c *client) do(req *http.Request) *response {
	c.t.Helper()
	if req.Method == http.MethodPost && req.Header.Get("Origin") == "" {
		req.Header.Set("Origin", c.base) // what a browser sends
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r := &response{status: res.StatusCode, header: res.Header, body: string(body)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		r.doc, err = html.Parse(bytes.NewReader(body))
		if err != nil {
			c.t.Fatal(err)
		}
	}
	return r
}

func (c *client) get(path string) *response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.do(req)
}

func (c *client) post(path string, v url.Values) *response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

func (c *client) postFile(path string, fields url.Values, fileField string, data []byte) *response {
	c.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	fw, _ := mw.CreateFormFile(fileField, "backup.json")
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return c.do(req)
}

// form is a <form> found on a page.
type form struct {
	id, action, enctype string
	values              url.Values
	page                string // where it was found
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

// forms lists the page's forms with the values their fields hold.
func (r *response) forms(page string) []*form {
	var out []*form
	if r.doc == nil {
		return nil
	}
	walk(r.doc, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "form" {
			return
		}
		f := &form{id: attr(n, "id"), action: attr(n, "action"), enctype: attr(n, "enctype"), values: url.Values{}, page: page}
		if f.action == "" {
			f.action = page
		}
		walk(n, func(e *html.Node) {
			if e.Type != html.ElementNode {
				return
			}
			switch e.Data {
			case "input":
				if attr(e, "type") != "file" {
					f.values.Add(attr(e, "name"), attr(e, "value"))
				}
			case "select":
				v := ""
				walk(e, func(o *html.Node) {
					if o.Type == html.ElementNode && o.Data == "option" && (v == "" || attr(o, "selected") != "" || hasAttr(o, "selected")) {
						v = attr(o, "value")
					}
				})
				f.values.Add(attr(e, "name"), v)
			}
		})
		out = append(out, f)
	})
	return out
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

// form returns the first form with the id, failing the test if none.
func (r *response) form(t testing.TB, page, id string) *form {
	t.Helper()
	for _, f := range r.forms(page) {
		if f.id == id {
			return f
		}
	}
	t.Fatalf("%s has no form %q:\n%s", page, id, r.body)
	return nil
}

// links lists the local links of the page.
func (r *response) links() []string {
	var out []string
	if r.doc == nil {
		return nil
	}
	walk(r.doc, func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "a" || n.Data == "link") {
			if h := attr(n, "href"); strings.HasPrefix(h, "/") {
				out = append(out, h)
			}
		}
	})
	return out
}

// fieldErrors maps data-field to the text of each error span.
func (r *response) fieldErrors() map[string]string {
	out := map[string]string{}
	if r.doc == nil {
		return out
	}
	walk(r.doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "span" && attr(n, "class") == "error" {
			out[attr(n, "data-field")] = text(n)
		}
	})
	return out
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return strings.TrimSpace(b.String())
}

// byClass returns the text of the first element with the class.
func (r *response) byClass(class string) string {
	var out string
	if r.doc == nil {
		return ""
	}
	walk(r.doc, func(n *html.Node) {
		if out == "" && n.Type == html.ElementNode && attr(n, "class") == class {
			out = text(n)
		}
	})
	return out
}

// tableRows returns the text of each body row of the table with the id.
func (r *response) tableRows(id string) []string {
	var rows []string
	walk(r.doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "table" && attr(n, "id") == id {
			walk(n, func(tr *html.Node) {
				if tr.Type == html.ElementNode && tr.Data == "tbody" {
					for c := tr.FirstChild; c != nil; c = c.NextSibling {
						if c.Type == html.ElementNode && c.Data == "tr" {
							rows = append(rows, text(c))
						}
					}
				}
			})
		}
	})
	return rows
}

// login logs the client in with the admin password.
func (c *client) login(password string) *response {
	c.t.Helper()
	p := c.get("/login")
	if p.status != http.StatusOK {
		c.t.Fatalf("GET /login: %d %s", p.status, p.location())
	}
	f := p.form(c.t, "/login", "login")
	f.values.Set("password", password)
	return c.post(f.action, f.values)
}

func (c *client) mustLogin() {
	c.t.Helper()
	if r := c.login(testAdminPass); r.status != http.StatusSeeOther || r.location() != "/" {
		c.t.Fatalf("login: %d %s\n%s", r.status, r.location(), r.body)
	}
}

// submit loads page, fills form id (the first one, or the one whose
// hidden key field has keyValue) and posts it.
func (c *client) submit(page, id string, fields map[string]string) *response {
	c.t.Helper()
	f := c.get(page).form(c.t, page, id)
	for k, v := range fields {
		f.values.Set(k, v)
	}
	return c.post(f.action, f.values)
}

// submitOK is submit that wants the redirect of a form that worked.
func (c *client) submitOK(page, id string, fields map[string]string) {
	c.t.Helper()
	r := c.submit(page, id, fields)
	if r.status != http.StatusSeeOther {
		c.t.Fatalf("form %s on %s %v: status %d, errors %v, %q", id, page, fields, r.status, r.fieldErrors(), r.byClass("error"))
	}
}

// queueMessages puts n messages to remote recipients into the box's queue,
// as the SMTP server would, and returns their IDs.
func (b *testBox) queueMessages(n int) []string {
	b.t.Helper()
	q, err := queue.Open(filepath.Join(b.dir, "queue"))
	if err != nil {
		b.t.Fatal(err)
	}
	now := time.Now()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%d.M%dP1Q%d.box", now.Unix(), i, i)
		body := fmt.Sprintf("From: %s@%s\r\nTo: friend%d@remote.test\r\nSubject: report %d\r\n\r\nhello\r\n", testUser, testDomain, i, i)
		if err := os.WriteFile(q.MsgPath(id), []byte(body), 0o600); err != nil {
			b.t.Fatal(err)
		}
		env := &queue.Envelope{ID: id, From: testUser + "@" + testDomain, Received: now, Size: int64(len(body)), NextAttempt: now.Add(time.Hour),
			Recipients: []queue.Recipient{{Addr: fmt.Sprintf("friend%d@remote.test", i), State: "deferred", Attempts: 1, LastError: "dns: no answer"}}}
		if err := q.Save(env); err != nil {
			b.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// manyUsers adds n users sharing one password hash (hashing a thousand
// passwords would take minutes), through the settings store.
func (b *testBox) manyUsers(n int) {
	b.t.Helper()
	hash := config.HashPassword(testUserPass)
	st := &config.Store{Dir: b.dir}
	if _, err := st.Update(func(c *config.Config) error {
		for i := range n {
			c.Users = append(c.Users, config.User{Name: fmt.Sprintf("user%04d", i), Hash: hash})
		}
		return nil
	}); err != nil {
		b.t.Fatal(err)
	}
}

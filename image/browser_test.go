package image_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// The box's first-run settings in the VM tests.
const (
	vmAdminPass = "Blue-Kettle-Morning-42"
	vmDomain    = "example.test"
	vmUser      = "alice"
	vmUserPass  = "Garden-Path-Seven-7"
)

// browser is an admin on the setup page through the VM's forward: a
// cookie jar, no redirects followed.
type browser struct {
	t  *testing.T
	hc *http.Client
}

func (v *vm) browser() *browser {
	hc := v.http()
	hc.Jar, _ = cookiejar.New(nil)
	return &browser{t: v.t, hc: hc}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (int, string, string) {
	b.t.Helper()
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Location"), string(body)
}

func (b *browser) get(path string) string {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://box"+path, nil)
	code, _, body := b.do(req)
	if code != http.StatusOK {
		b.t.Fatalf("GET %s: %d\n%s", path, code, body)
	}
	return body
}

func (b *browser) csrf(path string) string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(b.get(path))
	if m == nil {
		b.t.Fatalf("no csrf field on %s", path)
	}
	return m[1]
}

// post sends a form and expects a redirect.
func (b *browser) post(path string, v url.Values) string {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://box"+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, loc, body := b.do(req)
	if code != http.StatusSeeOther {
		b.t.Fatalf("POST %s: %d, want a redirect\n%s", path, code, body)
	}
	return loc
}

// setup fills in the first-run form.
func (b *browser) setup() {
	b.t.Helper()
	b.post("/setup", url.Values{"csrf": {b.csrf("/setup")}, "admin_password": {vmAdminPass}, "admin_password2": {vmAdminPass},
		"hostname": {"mail." + vmDomain}, "domain": {vmDomain}, "user": {vmUser}, "password": {vmUserPass},
		"nbt_name": {"OFFICEBOX"}, "workgroup": {"OFFICE"}})
}

func (b *browser) login() {
	b.t.Helper()
	b.post("/login", url.Values{"csrf": {b.csrf("/login")}, "password": {vmAdminPass}})
}

// upload sends a bundle with the firmware page's form and expects the
// redirect back to the page (the box reboots a second later, so the
// page with its notice is not fetched).
func (b *browser) upload(bundle []byte) {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("csrf", b.csrf("/firmware"))
	fw, _ := mw.CreateFormFile("bundle", "concierge.bundle")
	fw.Write(bundle)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://box/firmware/apply", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	code, loc, body := b.do(req)
	if code != http.StatusSeeOther || loc != "/firmware" {
		b.t.Fatalf("firmware upload: %d %s\n%s", code, loc, body)
	}
}

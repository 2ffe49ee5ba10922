package e2e

import (
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"concierge/internal/testnet"
)

// fixture is a page in the shape the plan gives the setup page: forms by
// id with inputs by name, per-row forms, field errors and a notice, and a
// table whose rows carry data-id.
var fixture = template.Must(template.New("").Parse(`<!doctype html>
<html><head><title>Users</title></head><body>
<nav><a href="/">Status</a><a href="/users">Users</a></nav>
{{if .Notice}}<p class="notice">{{.Notice}}</p>{{end}}
<table id="users"><tr><th>Name</th><th>Addresses</th></tr>
{{range .Users}}<tr data-id="{{.}}"><td>{{.}}</td><td>{{.}}@example.test</td>
<td><form method="post" id="user-del-{{.}}" action="/del"><input type="hidden" name="name" value="{{.}}"><button type="submit">Remove</button></form></td></tr>
{{end}}</table>
<form method="post" id="user-add" action="/add">
<input name="name" value="{{.Name}}">{{if .Err}}<span class="error" data-field="name">{{.Err}}</span>{{end}}
<input name="password" type="password"><button type="submit">Add</button></form>
</body></html>`))

// The harness itself: the driver loads, fills, submits, reads tables and
// form values and takes screenshots, on a fixture page served from the
// LAN; it needs no box and runs before the setup page's tests.
func TestBrowserDriver(t *testing.T) {
	requireBrowser(t)
	lan := testnet.NewLAN(t, "10.77.52.0/24")
	srv, pc := lan.AddHost("srv", 1), lan.AddHost("pc", 2)
	var mu sync.Mutex // the handlers' state
	users := []string{"alice"}
	type data struct {
		Users             []string
		Notice, Name, Err string
	}
	mux := http.NewServeMux()
	locked := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { mu.Lock(); defer mu.Unlock(); h(w, r) }
	}
	mux.HandleFunc("GET /{$}", locked(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/users", http.StatusSeeOther) }))
	mux.HandleFunc("GET /users", locked(func(w http.ResponseWriter, r *http.Request) {
		fixture.Execute(w, data{Users: users, Notice: r.URL.Query().Get("notice")})
	}))
	mux.HandleFunc("POST /add", locked(func(w http.ResponseWriter, r *http.Request) {
		name := r.FormValue("name")
		if name == "" || r.FormValue("password") == "" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fixture.Execute(w, data{Users: users, Name: name, Err: "name and password needed"})
			return
		}
		users = append(users, name)
		http.Redirect(w, r, "/users?notice=added+"+name, http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /del", locked(func(w http.ResponseWriter, r *http.Request) {
		for i, u := range users {
			if u == r.FormValue("name") {
				users = append(users[:i], users[i+1:]...)
				break
			}
		}
		http.Redirect(w, r, "/users?notice=removed", http.StatusSeeOther)
	}))
	var l net.Listener
	if err := srv.InNS(func() (err error) { l, err = net.Listen("tcp4", srv.Addr.String()+":80"); return err }); err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })

	dir := t.TempDir()
	b := StartBrowser(t, pc, "http://"+srv.Addr.String(), dir)
	if p := b.Goto("/"); p.Path != "/users" || p.Status != 200 || p.Title != "Users" {
		t.Fatalf("goto / gave %+v", p)
	}
	p := b.Submit("user-add", "", map[string]string{"name": "bob"})
	if p.Status != http.StatusUnprocessableEntity || p.Errors["name"] != "name and password needed" {
		t.Errorf("a refused form gave %+v", p)
	}
	if v := b.Values("user-add"); v["name"] != "bob" || len(v) != 1 {
		t.Errorf("form values %v, want the name kept and no password", v)
	}
	p = b.SubmitOK("user-add", "", map[string]string{"name": "bob", "password": "x"})
	if p.Path != "/users" || p.Notice != "added bob" {
		t.Errorf("an accepted form gave %+v", p)
	}
	rows := b.Table("users")
	if len(rows) != 2 || rows[1].ID != "bob" || rows[1].Cells[1] != "bob@example.test" || rowWith(rows, "alice", "alice@example.test") == nil {
		t.Errorf("table rows:\n%s", texts(rows))
	}
	b.SubmitOK("user-del", `#users tr[data-id="alice"]`, nil)
	if rows := b.Table("users"); len(rows) != 1 || rows[0].ID != "bob" {
		t.Errorf("after removing alice:\n%s", texts(rows))
	}
	if l := b.Links("nav a"); fmt.Sprint(l) != "[/ /users]" {
		t.Errorf("links %v", l)
	}
	b.Screenshot("users")
	if st, err := os.Stat(filepath.Join(dir, "users.png")); err != nil || st.Size() < 1000 {
		t.Errorf("screenshot: %v", err)
	}
}

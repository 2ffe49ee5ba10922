package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"strings"

	"concierge/appliance/control"
)

//go:embed templates/*.html static/style.css
var assets embed.FS

// NavItem is one page in the navigation.
type NavItem struct {
	Path, Title string
}

// Nav lists the pages in the navigation, in order; the pages of later
// features (network, DHCP, diagnostics, ...) are added here and in routes.
var Nav = []NavItem{
	{"/", "Status"},
	{"/identity", "Identity"},
	{"/domains", "Mail domains"},
	{"/users", "Users"},
	{"/aliases", "Aliases"},
	{"/relay", "Sending"},
	{"/queue", "Queue"},
	{"/link", "ISP link"},
	{"/netbios", "NetBIOS"},
	{"/network", "Network"},
	{"/dhcp", "DHCP"},
	{"/diagnostics", "Diagnostics"},
	{"/maintenance", "Maintenance"},
	{"/firmware", "Firmware"},
}

// pages are the parsed templates, one set per page (the layout and the
// page's content).
type pages struct {
	t map[string]*template.Template
}

func loadPages() *pages {
	names, err := assets.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, n := range names {
		name := strings.TrimSuffix(n.Name(), ".html")
		if name == "layout" {
			continue
		}
		p.t[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+n.Name()))
	}
	return p
}

var funcs = template.FuncMap{
	"join": strings.Join,
	"size": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d bytes", n)
	},
	// logText is a log line without the time and level the table shows
	// in columns of their own.
	"logText": func(text string) string {
		for _, key := range []string{"time=", "level="} {
			if rest, ok := strings.CutPrefix(text, key); ok {
				if _, after, found := strings.Cut(rest, " "); found {
					text = after
				}
			}
		}
		return text
	},
}

// page is what every template gets.
type page struct {
	Title    string
	Path     string
	LoggedIn bool
	CSRF     string
	Nav      []NavItem
	Notice   string
	// Error is a message for the whole page (an op failed without
	// naming a field).
	Error string
	// Data is the page's own content.
	Data any
	// RowErrors is set when a per-row form came back with errors (the
	// rows' error spans are looked up only then: a page of a thousand
	// users renders faster).
	RowErrors bool

	form *formState
}

// formState is a form that was sent back with errors: what the admin
// typed (never the passwords) and the message for each field.
type formState struct {
	id     string // the form's id, plus ":" and the row's key for per-row forms
	values map[string]string
	errors map[string]string
}

// Val is what the admin typed into field of form, when it came back.
func (p *page) Val(form, field string) string {
	if p.form == nil || p.form.id != form {
		return ""
	}
	return p.form.values[field]
}

// Err is the error span of field of form, or nothing.
func (p *page) Err(form, field string) template.HTML {
	if p.form == nil || p.form.id != form || p.form.errors[field] == "" {
		return ""
	}
	return template.HTML(`<span class="error" data-field="` + template.HTMLEscapeString(field) + `">` +
		template.HTMLEscapeString(p.form.errors[field]) + `</span>`)
}

// Failed says whether form came back with errors.
func (p *page) Failed(form string) bool { return p.form != nil && p.form.id == form }

// render writes a page; the template runs into a buffer first, so a
// failure never sends half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	t := s.pages.t[name]
	if t == nil {
		panic("web: no template " + name)
	}
	if sess := sessionOf(r); sess != nil {
		p.LoggedIn = true
		p.CSRF = sess.csrf
		p.Nav = Nav
		if n := s.sessions.takeNotice(sess); n != "" && p.Notice == "" {
			p.Notice = n
		}
	}
	p.Path = r.URL.Path
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("web: template", "page", name, "err", err)
		http.Error(w, "Something went wrong on the box; please try again.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// failed turns the error of an op into a form sent back: the messages of
// the op's fields go next to the form's fields (rename maps an op's field
// name to the form's where they differ; rename[""] names the field an
// error without fields is about); anything else goes on top of the page. values are the fields the admin typed, to show again.
func failed(p *page, formID string, err error, values map[string]string, rename map[string]string) {
	fs := &formState{id: formID, values: values, errors: map[string]string{}}
	p.form = fs
	p.RowErrors = strings.Contains(formID, ":")
	var ce *control.Error
	if !errors.As(err, &ce) {
		p.Error = err.Error()
		return
	}
	if f, ok := rename[""]; ok && len(ce.Fields) == 0 {
		// The form's one field: the op's message goes next to it.
		fs.errors[f] = plain(ce.Message)
		return
	}
	var rest []string
	for f, msg := range ce.Fields {
		msg = plain(msg)
		if to, ok := rename[f]; ok {
			f = to
		}
		if _, known := values[f]; known {
			fs.errors[f] = msg
		} else {
			rest = append(rest, msg)
		}
	}
	if len(ce.Fields) == 0 || ce.Message != "" && len(rest) > 0 {
		rest = append([]string{ce.Message}, rest...)
	}
	p.Error = strings.Join(rest, " ")
	if len(fs.errors) == 0 && p.Error == "" {
		p.Error = ce.Error()
	}
}

// fieldPrefix is the setting's name that starts the messages of the
// settings checks ("user: ...", "nbt.name: ...").
var fieldPrefix = regexp.MustCompile(`^[a-z][a-z0-9_.-]*: `)

// plain drops the setting's name from a message shown next to its field
// ("password: is too short" reads "is too short").
func plain(msg string) string {
	return fieldPrefix.ReplaceAllString(msg, "")
}

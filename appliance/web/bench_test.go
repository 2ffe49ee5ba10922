package web

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"concierge/appliance/control"
)

// benchBox is a box with 1,000 users, 100 queued messages and a
// logged-in session, for the page benchmarks.
func benchBox(b *testing.B) (*testBox, *http.Cookie, []string) {
	box := newTestBox(b, true)
	box.manyUsers(1000)
	ids := box.queueMessages(100)
	id, _ := box.page.sessions.create()
	return box, &http.Cookie{Name: SessionCookie, Value: id}, ids
}

// BenchmarkPage is the server time of each page (the ops it calls and the
// template), with 1,000 users and 100 queued messages; the target is
// under 50 ms a page.
func BenchmarkPage(b *testing.B) {
	box, cookie, ids := benchBox(b)
	for _, p := range []string{"/", "/identity", "/domains", "/users", "/aliases", "/relay", "/queue", "/queue/" + ids[0], "/netbios", "/maintenance"} {
		b.Run(p, func(b *testing.B) {
			var size int
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, p, nil)
				r.AddCookie(cookie)
				w := httptest.NewRecorder()
				box.page.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", p, w.Code)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}

// BenchmarkHeap is the heap the setup page holds: the Server with its
// templates and a full set of sessions, after rendering the largest page
// (reported as heap-bytes; the target is under 5 MB of RSS).
func BenchmarkHeap(b *testing.B) {
	box, _, _ := benchBox(b)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := New(Options{Control: box.ctl})
		var cookie *http.Cookie
		for range MaxSessions {
			id, _ := s.sessions.create()
			cookie = &http.Cookie{Name: SessionCookie, Value: id}
		}
		r := httptest.NewRequest(http.MethodGet, "/users", nil)
		r.AddCookie(cookie)
		s.ServeHTTP(httptest.NewRecorder(), r)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "heap-bytes")
		runtime.KeepAlive(s)
	}
	_ = control.OpStatus
}

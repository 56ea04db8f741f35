package server_test

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/web"
)

// The admin page's assets are public (no key), typed, and carry the security headers; the page
// itself is tested in a browser by test/browser.
func TestAdminPageAssets(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path string
		status       int
		contentType  string
		body         string // a part of the body
	}{
		{"GET", "/admin/", 200, "text/html; charset=utf-8", `<script src="/admin/app.js" defer></script>`},
		{"GET", "/admin", 200, "text/html; charset=utf-8", "<title>keyauthz admin</title>"},
		{"GET", "/admin/index.html", 200, "text/html; charset=utf-8", "Add API key"},
		{"HEAD", "/admin/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/admin/app.js", 200, "text/javascript; charset=utf-8", `"use strict";`},
		{"GET", "/admin/style.css", 200, "text/css; charset=utf-8", ":root"},
		{"GET", "/admin/trash.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/admin/nope.js", 404, "application/json; charset=utf-8", `{"error":"not found"}`},
		{"GET", "/admin/../admin/app.js", 200, "text/javascript; charset=utf-8", `"use strict";`},
		{"GET", "/admin/web.go", 404, "application/json; charset=utf-8", `{"error":"not found"}`},
	} {
		st, body, h := send(t, newRequest(t, c.method, f.URL+c.path, nil))
		if st != c.status || h.Get("Content-Type") != c.contentType || !strings.Contains(string(body), c.body) {
			t.Errorf("%s %s: %d %q %.80q, want %d %q containing %q", c.method, c.path, st, h.Get("Content-Type"), body, c.status, c.contentType, c.body)
		}
		checkAdminPageHeaders(t, c.method+" "+c.path, h)
	}
	// The page is not an API: nothing but GET and HEAD.
	if st, _, _ := send(t, newRequest(t, "POST", f.URL+"/admin/", map[string]string{})); st != http.StatusNotFound {
		t.Errorf("POST /admin/: %d, want 404", st)
	}
}

// checkAdminPageHeaders checks the security headers every answer under /admin carries
// (docs/admin-page.md#security-headers).
func checkAdminPageHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for name, want := range map[string]string{
		"X-Frame-Options":              "DENY",
		"Referrer-Policy":              "no-referrer",
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Opener-Policy":   "same-origin",
		"Cross-Origin-Resource-Policy": "same-origin",
		"Cache-Control":                "no-cache",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %s = %q, want %q", what, name, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("%s: CSP %q allows something unsafe", what, csp)
	}
}

// Every answer under /admin carries the page's headers, whatever the method and however the
// path is spelt: the 404s of methods the page does not route and of paths it does not map too.
func TestAdminPageHeadersAnyMethod(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/admin/", 404},
		{"POST", "/admin", 404},
		{"OPTIONS", "/admin/", 404},
		{"PUT", "/admin/app.js", 404},
		{"PATCH", "/admin/index.html", 404},
		{"DELETE", "/admin", 404},
		{"DELETE", "/admin/x/y", 404},
		{"GET", "/admin;x/", 404},
		{"GET", "/admin;x/app.js", 404},
		{"POST", "/admin;x/", 404},
		{"GET", "/adminx", 404},
		{"GET", "/ADMIN/", 404},
		{"GET", "//admin//app.js", 200},
		{"GET", "/x/../admin/nope", 404},
		{"POST", "/%61dmin/", 404},
		{"TRACE", "/admin/", 404},
		{"HEAD", "/admin/nope.css", 404},
	} {
		st, _, h := send(t, newRequest(t, c.method, f.URL+c.path, nil))
		if st != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, st, c.status)
		}
		checkAdminPageHeaders(t, c.method+" "+c.path, h)
	}
	// Outside /admin, a 404 is a plain one.
	if _, _, h := send(t, newRequest(t, "GET", f.URL+"/nope", nil)); h.Get("Content-Security-Policy") != "" {
		t.Errorf("GET /nope carries the admin page's CSP")
	}
}

// The page's markup has nothing its CSP would block (no inline script, style or handler), and
// nothing that could put the key where it must never be: the key field has no name (a form
// submitted without the script cannot carry it into a URL), and the script never writes a
// cookie, localStorage or the console.
func TestAdminPageSource(t *testing.T) {
	read := func(name string) string {
		b, err := fs.ReadFile(web.Admin, "admin/"+name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	html := read("index.html")
	for _, re := range []string{`<script(?:\s[^>]*)?>\s*[^<\s]`, `<style`, `\sstyle=`, `\son[a-z]+=`, `<(?:input|select|textarea)[^>]*\sname=`, `javascript:`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("index.html has %q (%s)", m, re)
		}
	}
	if strings.Count(html, "<script") != 1 || !strings.Contains(html, `<script src="/admin/app.js" defer></script>`) {
		t.Error("index.html must load exactly one script, /admin/app.js, by src")
	}
	js := read("app.js")
	for _, bad := range []string{`document\.cookie`, `localStorage\.`, `console\.[a-z]`, `\.innerHTML`, `\beval\(`, `location\.(search|hash|href) *=`, `history\.`} {
		if m := regexp.MustCompile(bad).FindString(js); m != "" {
			t.Errorf("app.js uses %q", m)
		}
	}
	if !strings.Contains(js, `sessionStorage.setItem(KEY_STORAGE, key)`) || !strings.Contains(js, `"X-API-Key"`) {
		t.Error("app.js must keep the key in sessionStorage and send it as X-API-Key")
	}
}

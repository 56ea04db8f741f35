package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// End-to-end tests of the cross-site rule
// (docs/security.md#ambient-keys-and-cross-site-requests): a key that arrives by cookie or URL
// parameter is ambient, so a write made with one is refused (403) when the browser says another
// site started the request (Sec-Fetch-Site not same-origin/none, or an Origin of another host).
// Reads, same-origin writes and header keys are not affected. The rule is the policy's, driven
// by input.request.cross_site that Go computes; these tests drive it through the admin API and
// the nginx forward-auth endpoint of a real server.

const msgCrossSite = "cross-site request with a cookie or URL key"

// ambient is one way of presenting the key that a browser adds on its own.
type ambient struct {
	name string
	with func(c call, key string) call
}

var ambientKeys = []ambient{
	{"cookie", func(c call, key string) call { c.cookie = &key; return c }},
	{"URL parameter", func(c call, key string) call { c.path = withAPIKeyParam(c.path, key); return c }},
}

func withAPIKeyParam(path, key string) string {
	u, err := url.Parse(path)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set("api-key", key)
	u.RawQuery = q.Encode()
	return u.String()
}

// crossSite are the headers by which a browser marks a request another site started.
var crossSite = []struct {
	name   string
	header map[string]string
}{
	{"Origin of another site", map[string]string{"Origin": "https://evil.example"}},
	{"Origin null", map[string]string{"Origin": "null"}},
	{"Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}},
	{"Sec-Fetch-Site same-site", map[string]string{"Sec-Fetch-Site": "same-site"}},
	{"both", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
}

// sameOrigin are the headers of a request the page itself started (the request's host is
// localhost; ports are not compared).
var sameOrigin = []struct {
	name   string
	header map[string]string
}{
	{"Origin of the same host", map[string]string{"Origin": "http://localhost"}},
	{"Origin of the same host, another port", map[string]string{"Origin": "http://localhost:8080"}},
	{"Sec-Fetch-Site same-origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}},
	{"Sec-Fetch-Site none", map[string]string{"Sec-Fetch-Site": "none"}},
	{"neither header", nil},
}

// csrfWrites are admin-API writes a forged page would try; n makes names unique per request.
func csrfWrites(w *world, userID, keyID string, n int) []call {
	return []call{
		{method: "POST", path: "/api/engine/v2/domains", body: map[string]any{"name": fmt.Sprint("forged ", n), "domain": fmt.Sprintf("forged%d.example", n)}},
		{method: "POST", path: "/api/engine/v2/users", body: map[string]any{"authority_id": w.domainID, "name": "forged", "email": fmt.Sprintf("f%d@example.com", n), "sys_admin": true}},
		{method: "POST", path: "/api/engine/v2/api_keys", body: map[string]any{"name": fmt.Sprint("forged ", n), "user_id": userID, "scopes": []string{"public"}}},
		{method: "PATCH", path: "/api/engine/v2/users/" + userID, body: map[string]any{"sys_admin": true}},
		{method: "PUT", path: "/api/engine/v2/api_keys/" + keyID, body: map[string]any{"scopes": []string{"public"}}},
		{method: "DELETE", path: "/api/engine/v2/api_keys/" + keyID},
	}
}

// TestCrossSiteWritesWithAmbientKeys: every write with a cookie or URL key that a browser marks
// cross-site is refused with nothing stored, as a JSON request and as the text/plain, form and
// multipart bodies a page can send without a preflight.
func TestCrossSiteWritesWithAmbientKeys(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Target", false)
	victim := w.createKey(t, bookingPanel(userID, "victim"))

	n := 0
	for _, a := range ambientKeys {
		for _, cs := range crossSite {
			t.Run(a.name+"/"+cs.name, func(t *testing.T) {
				before := w.storeState(t)
				n++
				for _, c := range csrfWrites(w, userID, victim.ID, n) {
					c.header = cs.header
					r := w.must(t, a.with(c, w.AdminKey))
					wantError(t, c.method+" "+c.path, r, http.StatusForbidden, msgCrossSite)
				}
				// The bodies an HTML form or a no-cors fetch sends: refused by the same rule
				// before the handler's 415 is reached.
				for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
					h := map[string]string{"Content-Type": ct}
					for k, v := range cs.header {
						h[k] = v
					}
					c := call{method: "POST", path: "/api/engine/v2/domains", header: h,
						body: fmt.Sprintf(`{"name":"forged %s","domain":"forged-form.example"}`, ct)}
					r := w.must(t, a.with(c, w.AdminKey))
					wantError(t, "POST "+ct, r, http.StatusForbidden, msgCrossSite)
				}
				w.unchanged(t, before)
			})
		}
	}
}

// TestCrossSiteReadsAndSameOriginWrites: reads with an ambient key are allowed cross-site (a
// read changes nothing; the browser keeps a cross-site response from the page), and writes
// with one are allowed when the request is same-origin or carries neither header.
func TestCrossSiteReadsAndSameOriginWrites(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Reader", false)

	for _, a := range ambientKeys {
		for _, cs := range crossSite {
			t.Run("read/"+a.name+"/"+cs.name, func(t *testing.T) {
				for _, path := range []string{"/api/engine/v2/domains", "/api/engine/v2/api_keys", inspectRoute, "/api/engine/v2/users/" + userID} {
					r := w.must(t, a.with(call{method: "GET", path: path, header: cs.header}, w.AdminKey))
					if r.status != http.StatusOK {
						t.Errorf("GET %s: %d %s, want 200", path, r.status, r.body)
					}
				}
			})
		}
	}

	n := 0
	for _, a := range ambientKeys {
		for _, so := range sameOrigin {
			t.Run("write/"+a.name+"/"+so.name, func(t *testing.T) {
				n++
				c := call{method: "POST", path: "/api/engine/v2/domains", header: so.header,
					body: map[string]any{"name": fmt.Sprint("same origin ", n), "domain": fmt.Sprintf("same%d.example", n)}}
				r := w.must(t, a.with(c, w.AdminKey))
				if r.status != http.StatusCreated {
					t.Fatalf("POST /domains: %d %s, want 201", r.status, r.body)
				}
				k := w.createKey(t, bookingPanel(userID, fmt.Sprint("same origin key ", n)))
				r = w.must(t, a.with(call{method: "DELETE", path: "/api/engine/v2/api_keys/" + k.ID, header: so.header}, w.AdminKey))
				if r.status != http.StatusAccepted {
					t.Errorf("DELETE: %d %s, want 202", r.status, r.body)
				}
			})
		}
	}
}

// TestCrossSiteHeaderKeysUnaffected: a key in X-API-Key is not ambient (a page cannot make a
// browser add it to another site's request), so cross-site headers change nothing for it.
func TestCrossSiteHeaderKeysUnaffected(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Scripted", false)
	for i, cs := range crossSite {
		t.Run(cs.name, func(t *testing.T) {
			c := call{method: "POST", path: "/api/engine/v2/domains", key: w.AdminKey, header: cs.header,
				body: map[string]any{"name": fmt.Sprint("header ", i), "domain": fmt.Sprintf("header%d.example", i)}}
			if r := w.must(t, c); r.status != http.StatusCreated {
				t.Fatalf("POST /domains: %d %s, want 201", r.status, r.body)
			}
			k := w.createKey(t, bookingPanel(userID, fmt.Sprint("header key ", i)))
			if r := w.must(t, call{method: "DELETE", path: "/api/engine/v2/api_keys/" + k.ID, key: w.AdminKey, header: cs.header}); r.status != http.StatusAccepted {
				t.Errorf("DELETE: %d %s, want 202", r.status, r.body)
			}
		})
	}
}

// TestCrossSiteForwardAuth: through /authz/nginx (the client's Cookie, Origin and
// Sec-Fetch-Site reach the auth subrequest, as nginx passes every client header), a
// cross-site module execute with a cookie key is denied, and so is the control websocket with
// a URL key; the same requests same-origin, or with a header key, are allowed.
func TestCrossSiteForwardAuth(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Panel", false)
	panel := *w.createKey(t, bookingPanel(userID, "panel")).XAPIKey
	execute := "/api/engine/v2/systems/sys-1/Bookings_1/book"
	websocket := "/api/engine/v2/systems/control?api-key=" + url.QueryEscape(panel)

	ask := func(t *testing.T, method, uri string, h map[string]string, cookie *string) reply {
		t.Helper()
		header := map[string]string{"X-Original-Method": method, "X-Original-URI": uri, "X-Original-Remote-Addr": "192.0.2.1"}
		for k, v := range h {
			header[k] = v
		}
		return w.must(t, call{method: "GET", path: "/authz/nginx", header: header, cookie: cookie})
	}
	evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
	upgrade := map[string]string{"Upgrade": "websocket"}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	cases := []struct {
		name       string
		method     string
		uri        string
		header     map[string]string
		cookie     *string
		wantStatus int
	}{
		{"execute, cookie, cross-site", "POST", execute, evil, &panel, 403},
		{"execute, URL key, cross-site", "POST", execute + "?api-key=" + url.QueryEscape(panel), evil, nil, 403},
		{"websocket, URL key, cross-site", "GET", websocket, merge(upgrade, evil), nil, 403},
		{"execute, cookie, same-origin", "POST", execute, map[string]string{"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}, &panel, 200},
		{"execute, cookie, no browser headers", "POST", execute, nil, &panel, 200},
		{"websocket, URL key, same-origin", "GET", websocket, merge(upgrade, map[string]string{"Origin": "http://localhost"}), nil, 200},
		{"read, cookie, cross-site", "GET", "/api/engine/v2/systems/sys-1", evil, &panel, 200},
		{"execute, header key, cross-site", "POST", execute, merge(evil, map[string]string{"X-API-Key": panel}), nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, tc.method, tc.uri, tc.header, tc.cookie)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.wantStatus)
			}
			if tc.wantStatus == 403 {
				wantError(t, tc.name, r, 403, msgCrossSite)
			}
		})
	}
}

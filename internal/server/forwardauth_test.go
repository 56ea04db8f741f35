package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/authz"
)

// hostileHeaders are what a client adds to describe another request than the one the backend
// runs: every forwarding header of every style, pointing at the anonymous root, with GET, and at
// the other domain's host; and forged identity headers.
var hostileHeaders = map[string]string{
	"X-Forwarded-Uri":       v2,
	"X-Forwarded-Method":    "GET",
	"X-Forwarded-Host":      "other.example",
	"X-Forwarded-Prefix":    v2,
	"X-Original-Uri":        v2,
	"X-Original-Method":     "GET",
	"X-Original-Host":       "other.example",
	"X-Original-Url":        v2,
	"X-Rewrite-Url":         v2,
	"X-Auth-User-Id":        "forged",
	"X-Auth-Permissions":    "admin_support",
	"X-Envoy-Original-Path": v2,
}

// styleHeaders are the headers each style trusts; the hostile set must not replace them.
var styleHeaders = map[string][]string{
	"nginx":   {"X-Original-Method", "X-Original-Uri", "X-Original-Remote-Addr"},
	"traefik": {"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host"},
	"envoy":   nil,
}

// TestForwardAuthTrustsOnlyItsOwnHeaders: with every other style's headers describing the
// anonymous root (or the other domain), each endpoint still judges the request its gateway
// describes, exactly as the Data API judges that request.
func TestForwardAuthTrustsOnlyItsOwnHeaders(t *testing.T) {
	f := newFixture(t)
	cases := []decisionCase{
		{note: "booking/delete system", key: booking, method: "DELETE", path: v2 + "/systems/sys-1", status: 403},
		{note: "booking/list api keys", key: booking, method: "GET", path: v2 + "/api_keys", status: 403},
		{note: "booking/create user", key: booking, method: "POST", path: v2 + "/users", status: 403},
		{note: "kiosk/create domain", key: kiosk, method: "POST", path: v2 + "/domains", status: 403},
		{note: "kiosk/update zone", key: kiosk, method: "PATCH", path: v2 + "/zones/z-1", status: 403},
		{note: "kiosk/list brokers", key: kiosk, method: "GET", path: v2 + "/brokers", status: 403},
		{note: "no key/show system", method: "GET", path: v2 + "/systems/sys-1", status: 401},
		{note: "other domain's key on localhost", key: other, method: "GET", path: v2 + "/systems/sys-1", status: 401},
		{note: "booking/show system (allowed)", key: booking, method: "GET", path: v2 + "/systems/sys-1", status: 200},
	}
	for _, c := range cases {
		t.Run(c.note, func(t *testing.T) {
			t.Parallel()
			want := askDataAPI(t, f, c)
			if want.Status != c.status {
				t.Fatalf("data API: status %d (%q), want %d", want.Status, want.Message, c.status)
			}
			for style, build := range gatewayStyles {
				req := build(t, f, c)
				for name, v := range hostileHeaders {
					if !containsFold(styleHeaders[style], name) {
						req.Header.Set(name, v)
					}
				}
				got := askForwardAuth(t, f, style, c, req)
				if got.Allow != want.Allow || got.Status != want.Status || !got.Allow && got.Message != want.Message {
					t.Errorf("%s with hostile headers: allow %v status %d %q; the request itself: allow %v status %d %q",
						style, got.Allow, got.Status, got.Message, want.Allow, want.Status, want.Message)
				}
				if got.Allow && got.Headers["X-Auth-User-Id"] == "forged" {
					t.Errorf("%s: the forged identity came back", style)
				}
				// A method override is another method for a backend that honours it: refused
				// whatever the request, never judged as the method it overrides.
				for _, name := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
					req := build(t, f, c)
					req.Header.Set(name, "GET")
					if got := askForwardAuth(t, f, style, c, req); got.Allow || got.Status != 403 || got.Message != authz.MsgMethodOverride {
						t.Errorf("%s with %s: allow %v status %d %q, want 403 %q", style, name, got.Allow, got.Status, got.Message, authz.MsgMethodOverride)
					}
				}
			}
		})
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// TestForwardAuthMissingHeader: a trusted header that is absent, empty or doubled is a 403
// naming it, never a fall-back to another source (here, each time, the other style's headers
// and the request itself describe an allowed request).
func TestForwardAuthMissingHeader(t *testing.T) {
	f := newFixture(t)
	allowed := decisionCase{key: admin, method: "GET", path: v2 + "/api_keys"}
	for style, names := range styleHeaders {
		for _, name := range names {
			for _, how := range []string{"absent", "empty", "twice"} {
				t.Run(style+"/"+name+"/"+how, func(t *testing.T) {
					t.Parallel()
					req := gatewayStyles[style](t, f, allowed)
					// Every other style's view of the same allowed request.
					for _, h := range []string{"X-Original-Method", "X-Forwarded-Method"} {
						req.Header.Set(h, "GET")
					}
					for _, h := range []string{"X-Original-Uri", "X-Forwarded-Uri"} {
						req.Header.Set(h, v2+"/api_keys")
					}
					req.Header.Set("X-Forwarded-Host", "localhost")
					switch how {
					case "absent":
						req.Header.Del(name)
					case "empty":
						req.Header.Set(name, "")
					case "twice":
						req.Header.Add(name, req.Header.Get(name))
					}
					status, body, h := send(t, req)
					msg := jsonError(t, body)
					if status != 403 || !strings.Contains(strings.ToLower(msg), strings.ToLower(name)) {
						t.Fatalf("status %d %q, want 403 naming %s", status, msg, name)
					}
					if h.Get("X-Auth-Error") != msg || h.Get("X-Auth-User-Id") != "" {
						t.Errorf("headers %v", h)
					}
				})
			}
		}
	}
	t.Run("traefik/Host does not stand in for X-Forwarded-Host", func(t *testing.T) {
		req := gatewayStyles["traefik"](t, f, allowed)
		req.Header.Del("X-Forwarded-Host")
		req.Host = "localhost"
		if status, body, _ := send(t, req); status != 403 || !strings.Contains(jsonError(t, body), "X-Forwarded-Host") {
			t.Fatalf("status %d %s", status, body)
		}
	})
}

func jsonError(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", body, err)
	}
	return e.Error
}

// TestRetiredForwardAuth: /authz and every other spelling of a path under it is a 403 saying
// the endpoint was replaced, whatever headers come with it (here, a complete nginx and Traefik
// description of a request the admin key may make).
func TestRetiredForwardAuth(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{
		"/authz", "/authz/", "/authz?x=1", "/authz/x", "/AUTHZ", "/Authz/nginx", "/authz/NGINX",
		"/authz/nginx/", "/authz//nginx", "/authz/./nginx", "/authz/%6eginx", "/authz%2fnginx",
		"/authz%2Fnginx", "/authz%5cnginx", "/x/../authz/nginx", "/%2e%2e/authz/traefik", "/.//authz/traefik",
		"/authz/traefik/x", "/authz/nginx%3f", "/authz/envoyx", "/authz/Envoy/api/engine/v2",
		"/authz/envoy%2f" + v2, "/authz" + v2 + "/api_keys", "/authz/%2e%2e/metrics", "/authz%2f%2e%2e/metrics",
		"/authz/nginx#x", "/%61uthz/nginx",
	} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			for _, method := range []string{"GET", "POST", "DELETE"} {
				req := newRequest(t, method, f.URL+"/", nil)
				req.URL.Opaque = target
				req.Host = "localhost"
				req.Header.Set("X-API-Key", f.Admin)
				req.Header.Set("X-Original-Method", "GET")
				req.Header.Set("X-Original-URI", v2+"/api_keys")
				req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
				req.Header.Set("X-Forwarded-Method", "GET")
				req.Header.Set("X-Forwarded-Uri", v2+"/api_keys")
				req.Header.Set("X-Forwarded-Host", "localhost")
				status, body, h := send(t, req)
				if msg := jsonError(t, body); status != 403 || !strings.Contains(msg, "replaced by /authz/nginx") {
					t.Fatalf("%s %s: %d %q, want 403 saying /authz was replaced", method, target, status, msg)
				}
				if h.Get("X-Auth-User-Id") != "" {
					t.Errorf("identity headers on a retired endpoint")
				}
			}
		})
	}
}

// TestEnvoyPathStaysAJudgedPath: whatever Envoy appends to /authz/envoy is judged as the client's
// path; it never routes to keyauthz's own endpoints (a 200 from /metrics or /health would be an
// allow for Envoy), and the client's raw spelling is what is judged.
func TestEnvoyPathStaysAJudgedPath(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{
		"/../metrics", "/%2e%2e/metrics", "/%2E%2E/%2e%2e/health", "/..%2fmetrics", "/..%2Fhealth",
		"/..%5cmetrics", "/../authz/nginx", "/%2e%2e/authz/traefik", "/../../v1/data/keyauthz/allow",
		"/./../" + v2[1:] + "/api_keys", "", "?x=1", "/metrics", "/health",
	} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			req := newRequest(t, "GET", f.URL+"/", nil)
			req.URL.Opaque = "/authz/envoy" + path
			req.Host = "localhost"
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-URI", v2)
			req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
			status, body, h := send(t, req)
			if h.Get("X-Decision-Id") == "" {
				t.Fatalf("%s: not a decision: %d %s", path, status, body)
			}
			if status == 200 {
				// Only an anonymous route may be allowed without a key; /metrics and /health are
				// not routes of the table, so they need a key.
				t.Fatalf("%s allowed without a key: %s", path, body)
			}
		})
	}
	t.Run("the admin key is judged on the path it sent", func(t *testing.T) {
		c := decisionCase{key: admin, method: "DELETE", path: v2 + "/systems/sys-1?force=1"}
		want := askDataAPI(t, f, c)
		got := askForwardAuth(t, f, "envoy", c, gatewayStyles["envoy"](t, f, c))
		if got.Allow != want.Allow || got.Status != want.Status {
			t.Fatalf("envoy %v %d, data API %v %d", got.Allow, got.Status, want.Allow, want.Status)
		}
	})
}

// TestAdminGateJudgesTheRawTarget: the admin API judges the request-target as sent (so a
// spelling that routers read differently is refused as ambiguous), and an absolute-form target
// is judged as its path (not as "/http:/host/..."): a gated route is never reached by a caller
// who lacks its gate, through any spelling.
func TestAdminGateJudgesTheRawTarget(t *testing.T) {
	f := newFixture(t)
	addr := strings.TrimPrefix(f.URL, "http://")
	for _, target := range []string{
		"http://localhost" + v2 + "/api_keys",
		"http://localhost" + v2 + "/api_keys?limit=1",
		v2 + "/systems/../api_keys",
		v2 + "/systems/%2e%2e/api_keys",
		v2 + "//api_keys",
	} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			status, body := rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: localhost\r\nX-API-Key: "+f.Booking+"\r\nConnection: close\r\n\r\n")
			if status != 403 || !strings.Contains(body, "api_keys") && !strings.Contains(body, "ambiguous path") {
				t.Fatalf("booking key, GET %s: %d %s, want 403 naming api_keys or an ambiguous path", target, status, body)
			}
			status, body = rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: localhost\r\nX-API-Key: "+f.Admin+"\r\nConnection: close\r\n\r\n")
			if status != 200 && status != 403 {
				t.Fatalf("admin key, GET %s: %d %s", target, status, body)
			}
		})
	}
}

// rawRequest writes a request exactly as given and reads the answer.
func rawRequest(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestDecisionBadInput sends hostile or malformed input to the decision endpoints: each answer
// is a 4xx or a deny, never a 500 and never an allow.
func TestDecisionBadInput(t *testing.T) {
	f := newFixture(t)
	longPath := v2 + "/systems/" + strings.Repeat("a", 100<<10)
	manyHeaders := map[string]string{}
	for i := range 1000 {
		manyHeaders[fmt.Sprintf("x-h-%d", i)] = "v"
	}
	manyHeaders["x-api-key"] = f.Kiosk
	input := func(path string, headers map[string]string) string {
		b, _ := json.Marshal(map[string]any{"input": map[string]any{
			"method": "DELETE", "path": path, "host": "localhost", "headers": headers,
		}})
		return string(b)
	}
	cases := []struct {
		note string
		body string
	}{
		{"malformed JSON", `{"input": {"method": "GET",`},
		{"not an object", `[1,2,3]`},
		{"empty body", ``},
		{"missing input", `{"inputs": {"method": "GET", "path": "/"}}`},
		{"null input", `{"input": null}`},
		{"input of wrong type", `{"input": "GET /"}`},
		{"header of wrong type", `{"input": {"method": "GET", "path": "/", "host": "localhost", "headers": {"x-api-key": 42}}}`},
		{"path of 100 KB", input(longPath, map[string]string{"x-api-key": f.Booking})},
		{"1,000 headers", input(v2+"/systems/sys-1", manyHeaders)},
		{"NUL in the key header", input(v2+"/systems", map[string]string{"x-api-key": f.Booking + "\x00"})},
		{"NUL in the cookie", input(v2+"/systems", map[string]string{"cookie": "api-key=" + f.Booking + "\x00"})},
		{"NUL in the path", input(v2+"/systems/\x00/x", map[string]string{"x-api-key": f.Booking})},
		{"dot-dot to api keys", input(v2+"/systems/%2e%2e/api_keys", map[string]string{"x-api-key": f.Booking})},
		{"double-encoded dot-dot", input(v2+"/systems/%252e%252e/api_keys/x", map[string]string{"x-api-key": f.Booking})},
		{"body over 1 MiB", input("/"+strings.Repeat("b", 1<<20), nil)},
		{"unknown method", input(v2+"/systems/sys-1", map[string]string{"x-api-key": f.Kiosk})},
	}
	for _, c := range cases {
		for _, endpoint := range []string{"/v1/data/keyauthz/decision", "/v1/data/keyauthz/allow"} {
			t.Run(c.note+endpoint, func(t *testing.T) {
				t.Parallel()
				status, body, _ := send(t, newRequest(t, "POST", f.URL+endpoint, c.body))
				checkNotAllowed(t, status, body)
			})
		}
	}
}

// TestForwardAuthBadInput does the same for the three forward-auth endpoints, and for the
// retired /authz, which must fail closed whatever is appended to it.
func TestForwardAuthBadInput(t *testing.T) {
	f := newFixture(t)
	huge := v2 + "/systems/" + strings.Repeat("a", 200<<10)
	cases := []struct {
		note   string
		header map[string]string
		path   string
	}{
		{"nginx huge X-Original-URI", map[string]string{"X-Original-URI": huge, "X-Original-Method": "DELETE", "X-API-Key": f.Booking}, "/authz/nginx"},
		{"traefik huge X-Forwarded-Uri", map[string]string{"X-Forwarded-Uri": huge, "X-Forwarded-Method": "DELETE", "X-Forwarded-Host": "localhost", "X-API-Key": f.Booking}, "/authz/traefik"},
		{"envoy huge path", map[string]string{"X-API-Key": f.Booking}, "/authz/envoy" + v2 + "/api_keys/" + strings.Repeat("a", 200<<10)},
		{"nginx dot-dot", map[string]string{"X-Original-URI": v2 + "/systems/%2e%2e/api_keys", "X-Original-Method": "GET", "X-API-Key": f.Booking}, "/authz/nginx"},
		{"nginx dot-dot above the root", map[string]string{"X-Original-URI": "/../../" + v2 + "/api_keys", "X-Original-Method": "GET", "X-API-Key": f.Booking}, "/authz/nginx"},
		{"traefik with nginx's headers", map[string]string{"X-Original-URI": v2 + "/systems/sys-1", "X-Original-Method": "GET", "X-API-Key": f.Kiosk}, "/authz/traefik"},
		{"nginx with traefik's headers", map[string]string{"X-Forwarded-Uri": v2 + "/systems/sys-1", "X-Forwarded-Method": "GET", "X-API-Key": f.Kiosk}, "/authz/nginx"},
		{"envoy dot-dot", map[string]string{"X-API-Key": f.Booking}, "/authz/envoy" + v2 + "/systems/%2e%2e/api_keys"},
		{"envoy dot-dot out of the prefix to metrics", nil, "/authz/envoy/%2e%2e/%2e%2e/metrics"},
		{"envoy dot-dot out of the prefix to health", nil, "/authz/envoy/../../health"},
		{"envoy dot-dot out of the prefix to admin", map[string]string{"X-API-Key": f.Booking}, "/authz/envoy/%2e%2e" + v2 + "/api_keys"},
		{"envoy encoded slash out of the prefix", nil, "/authz/envoy%2f%2e%2e/metrics"},
		{"retired /authz with a dot-dot to metrics", nil, "/authz/%2e%2e/metrics"},
		{"retired /authz with nginx's headers", map[string]string{"X-Original-URI": v2 + "/systems/sys-1", "X-Original-Method": "GET", "X-API-Key": f.Kiosk}, "/authz"},
		{"nginx method injection", map[string]string{"X-Original-URI": v2 + "/systems/sys-1", "X-Original-Method": "GET\r\nX: y", "X-API-Key": f.Kiosk}, "/authz/nginx"},
	}
	for _, c := range cases {
		t.Run(c.note, func(t *testing.T) {
			t.Parallel()
			req := newRequest(t, "GET", f.URL+"/authz/nginx", nil)
			req.URL.Opaque = c.path // send the path exactly as written
			req.Host = "localhost"
			for k, v := range c.header {
				req.Header[http.CanonicalHeaderKey(k)] = []string{v}
			}
			if c.note == "nginx method injection" {
				// Go refuses to send a header value with CR LF; a gateway would too.
				req.Header.Set("X-Original-Method", "GET X")
			}
			status, body, _ := send(t, req)
			checkNotAllowed(t, status, body)
		})
	}
}

func checkNotAllowed(t *testing.T, status int, body []byte) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("status %d: %.200s", status, body)
	}
	if status < 400 {
		var out struct {
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("status %d, body %.200s", status, body)
		}
		var full struct {
			Allow bool `json:"allow"`
		}
		var b bool
		if json.Unmarshal(out.Result, &b) == nil && b || json.Unmarshal(out.Result, &full) == nil && full.Allow {
			t.Fatalf("allowed: %.300s", body)
		}
		if out.Result == nil {
			t.Fatalf("status %d without a result: %.300s", status, body)
		}
	}
}

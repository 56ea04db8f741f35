package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/internal/server"
)

func TestHealth(t *testing.T) {
	f := newFixture(t)
	status, body, _ := send(t, newRequest(t, "GET", f.URL+"/health", nil))
	if status != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("GET /health: %d %s", status, body)
	}
}

// TestMetrics scrapes /metrics after known decisions: decisions by result and status, the
// latency histogram and the store's size.
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	for _, c := range []decisionCase{
		{key: booking, method: "GET", path: v2 + "/systems/sys-1", status: 200},
		{key: booking, method: "DELETE", path: v2 + "/systems/sys-1", status: 403},
		{method: "GET", path: v2 + "/systems/sys-1", status: 401},
	} {
		askDataAPI(t, f, c) // two decisions each: /decision and /allow
	}
	status, body, _ := send(t, newRequest(t, "GET", f.URL+"/metrics", nil))
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	text := string(body)
	for _, want := range []string{
		`keyauthz_decisions_total{result="allow",status="200"} 2`,
		`keyauthz_decisions_total{result="deny",status="403"} 2`,
		`keyauthz_decisions_total{result="deny",status="401"} 2`,
		`keyauthz_decision_duration_seconds_count 6`,
		`keyauthz_decision_duration_seconds_bucket{le="+Inf"} 6`,
		`keyauthz_store_objects{kind="domains"} 2`,
		`keyauthz_store_objects{kind="users"} 3`,
		`keyauthz_store_objects{kind="keys"} 5`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestDecisionLog checks that each decision writes one JSON line with the fields of
// docs/architecture.md#observability, and no key material.
func TestDecisionLog(t *testing.T) {
	f := newFixture(t)
	c := decisionCase{key: booking, via: "query", method: "GET", path: v2 + "/systems/sys-1/?x=1", status: 200}
	v := askDataAPI(t, f, c)
	if !v.Allow {
		t.Fatalf("not allowed: %+v", v)
	}
	lines := strings.Split(strings.TrimSpace(f.DecisionLog()), "\n")
	if len(lines) != 2 { // /decision and /allow
		t.Fatalf("decision log has %d lines, want 2:\n%s", len(lines), f.DecisionLog())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"method": "GET", "path": v2 + "/systems/sys-1", "query": "x=1", "host": "localhost", "protocol": "http",
		"key_id": f.BookingKey.ID, "user_id": f.PanelUser.ID, "result": "allow", "status": float64(200),
	}
	for k, w := range want {
		if rec[k] != w {
			t.Errorf("%s = %v, want %v", k, rec[k], w)
		}
	}
	for _, k := range []string{"decision_id", "time", "revision", "latency_us"} {
		if rec[k] == nil || rec[k] == "" {
			t.Errorf("%s missing: %s", k, lines[0])
		}
	}
	checkNoKeyMaterial(t, "decision log", f.DecisionLog(), f.Booking)
}

func checkNoKeyMaterial(t *testing.T, what, text string, keyStrings ...string) {
	t.Helper()
	for _, k := range keyStrings {
		_, secret, _ := strings.Cut(k, ".")
		// Any case: a key sent as a host comes back lower-cased.
		lower := strings.ToLower(text)
		if strings.Contains(lower, strings.ToLower(k)) || (secret != "" && strings.Contains(lower, strings.ToLower(secret))) {
			t.Errorf("%s contains key material of %s...", what, k[:8])
		}
	}
	if regexp.MustCompile(`(?i)api-key=[^R&"]`).MatchString(text) {
		t.Errorf("%s contains an api-key parameter value", what)
	}
}

// testKey is a well-formed key (not stored anywhere) for the redaction tables.
const testKey = "0123456789abcdef0123456789abcdef.Ab-_cdEFghIJklMNopQRstUVwxYZ0123456789abcdE"

func TestRedactQuery(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(testKey))
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"zone=z1", "zone=z1"},
		{"api-key=abc.def", "api-key=REDACTED"},
		{"a=1&api-key=abc.def&b=2", "a=1&api-key=REDACTED&b=2"},
		{"API-KEY=abc", "API-KEY=REDACTED"},
		{"api-key=a&api-key=b", "api-key=REDACTED&api-key=REDACTED"},
		{"api-key", "api-key=REDACTED"},
		{"%61pi-key=abc.def", "%61pi-key=REDACTED"},
		{"api%2Dkey=abc.def", "api%2Dkey=REDACTED"},
		{"%2561pi-key=abc", "%2561pi-key=REDACTED"}, // encoded twice
		{"apikey=abc", "apikey=abc"},
		// ';' separates parameters as '&' does.
		{"x=1;api-key=abc.def", "x=1;api-key=REDACTED"},
		{"x=1;api-key=abc;y=2&api-key=d", "x=1;api-key=REDACTED;y=2&api-key=REDACTED"},
		{"x=1;%61pi-key=abc", "x=1;%61pi-key=REDACTED"},
		// A key under another name, encoded or not.
		{"token=" + testKey + "&zone=z1", "token=REDACTED&zone=z1"},
		{"t=" + url.QueryEscape(b64), "t=REDACTED"},
		{"t=" + b64, "t=REDACTED"},
		{"redirect=%2Fuploads%2Fu1%2Fdownload%2F" + testKey + "%2Ff.pdf", "redirect=REDACTED"},
		{testKey, "REDACTED"},
		// Ids alone are not secrets: key ids are logged on purpose.
		{"id=0123456789abcdef0123456789abcdef", "id=0123456789abcdef0123456789abcdef"},
	} {
		if got := server.RedactQuery(c.in); got != c.want {
			t.Errorf("RedactQuery(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRedactPath(t *testing.T) {
	std := base64.StdEncoding.EncodeToString([]byte(testKey))
	urlb := base64.URLEncoding.EncodeToString([]byte(testKey))
	raw := base64.RawURLEncoding.EncodeToString([]byte(testKey))
	// The bytes of a key (hex, '.', base64url) never encode to '+' or '/': both alphabets
	// give the same text, and a base64 key never spans path segments.
	if std != urlb {
		t.Fatalf("standard and URL base64 of a key differ: %s, %s", std, urlb)
	}
	const up = "/api/engine/v2/uploads/up-1/download/"
	for _, c := range []struct{ in, want string }{
		{"/api/engine/v2/systems/sys-1", "/api/engine/v2/systems/sys-1"},
		{"/api/engine/v2/api_keys/0123456789abcdef0123456789abcdef", "/api/engine/v2/api_keys/0123456789abcdef0123456789abcdef"},
		{"/api/engine/v2/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/api/engine/v2/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301"},
		{up + testKey + "/f.pdf", up + "REDACTED/f.pdf"},
		{up + testKey, up + "REDACTED"},
		{up + testKey[:40], up + "REDACTED"},                             // truncated
		{up + "0123456789abcdef0123456789abcdef.x/f", up + "REDACTED/f"}, // starts like a key
		{up + urlb + "/f.pdf", up + "REDACTED/f.pdf"},                    // base64url, padded
		{up + raw + "/f.pdf", up + "REDACTED/f.pdf"},                     // base64url, unpadded
		{up + url.QueryEscape(std) + "/f.pdf", up + "REDACTED/f.pdf"},    // padding escaped
		{"/d/" + std, "/d/REDACTED"},
		{up + url.PathEscape(url.PathEscape(testKey)) + "/f", up + "REDACTED/f"}, // escaped twice
		{"/x;api-key=" + testKey, "/REDACTED"},
	} {
		got := server.RedactPath(c.in)
		if got != c.want {
			t.Errorf("RedactPath(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, secret := range []string{testKey[33:], std[50:90], urlb[50:90]} {
			if strings.Contains(got, secret) {
				t.Errorf("RedactPath(%q) = %q still holds the secret", c.in, got)
			}
		}
	}
}

// TestRedactingHandler: whatever a log call is given (a string, an error quoting a URL, a
// group, a logger's own attributes, the message), the written record holds no key.
func TestRedactingHandler(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(server.NewRedactingHandler(slog.NewJSONHandler(&buf, nil)))
	logger.With("url", "/a?api-key="+testKey).Error("failed "+testKey,
		"path", "/uploads/u/download/"+testKey+"/f",
		"err", fmt.Errorf("GET /x/%s: boom", base64.StdEncoding.EncodeToString([]byte(testKey))),
		slog.Group("req", "uri", "/y/"+testKey), "n", 3, "id", "0123456789abcdef0123456789abcdef")
	out := buf.String()
	if strings.Contains(out, testKey[33:]) || strings.Count(out, "REDACTED") < 5 {
		t.Errorf("log record holds a key or was not redacted:\n%s", out)
	}
	if !strings.Contains(out, `"n":3`) || !strings.Contains(out, `"id":"0123456789abcdef0123456789abcdef"`) {
		t.Errorf("other values were changed:\n%s", out)
	}
}

// TestRequestLogRedactsKey drives every credential channel, and keys where no credential is
// read (URL paths, other parameters, base64), through the admin API, the Data API and forward
// auth with debug and decision logging on, and checks that no log holds the key's secret.
func TestRequestLogRedactsKey(t *testing.T) {
	f := newFixture(t)
	b64 := base64.StdEncoding.EncodeToString([]byte(f.Booking))
	uploads := v2 + "/uploads/up-1/download/"
	uris := []string{
		v2 + "/systems/sys-1?api-key=" + f.Booking,
		v2 + "/systems/sys-1?%61pi-key=" + f.Booking,
		v2 + "/systems/sys-1?x=1;api-key=" + f.Booking,
		v2 + "/systems/sys-1?x=1&api-key=" + f.Booking + ";y=2",
		v2 + "/systems/sys-1?x=1;%61pi-key=" + f.Booking,
		v2 + "/systems/sys-1?token=" + f.Booking,
		uploads + f.Booking + "/file.pdf",
		uploads + b64 + "/file.pdf",
		uploads + url.PathEscape(b64) + "/file.pdf?api-key=" + f.Booking,
		"/authz" + v2 + "/systems/sys-1?zone=1&api-key=" + f.Booking,
	}
	for _, uri := range uris {
		// The admin API itself (Gin's request log).
		req := newRequest(t, "GET", f.URL+uri, nil)
		req.Host = "localhost"
		if status, body, _ := send(t, req); status >= 500 {
			t.Fatalf("%s: %d %s", uri, status, body)
		}
		// Forward auth, the URI in nginx's trusted header.
		req = newRequest(t, "GET", f.URL+"/authz/nginx", nil)
		req.Host = "localhost"
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", uri)
		req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
		if status, body, _ := send(t, req); status >= 500 {
			t.Fatalf("/authz/nginx %s: %d %s", uri, status, body)
		}
		// The Data API, the URI as input.path.
		in := map[string]any{"input": map[string]any{"method": "GET", "path": uri, "host": "localhost"}}
		if status, body, _ := send(t, newRequest(t, "POST", f.URL+"/v1/data/keyauthz/decision", in)); status >= 500 {
			t.Fatalf("Data API %s: %d %s", uri, status, body)
		}
	}
	// A key sent by mistake as the method or the host (a client or service bug) is refused,
	// and must not reach the decision log either.
	for _, in := range []map[string]any{
		{"method": f.Booking, "path": v2 + "/systems/sys-1", "host": "localhost"},
		{"method": "GET", "path": v2 + "/systems/sys-1", "host": f.Booking},
	} {
		if status, body, _ := send(t, newRequest(t, "POST", f.URL+"/v1/data/keyauthz/decision", map[string]any{"input": in})); status >= 500 {
			t.Fatalf("Data API %v: %d %s", in, status, body)
		}
	}
	req := newRequest(t, "GET", f.URL+"/authz/nginx", nil)
	req.Host = "localhost"
	req.Header.Set("X-Original-Method", f.Booking)
	req.Header.Set("X-Original-URI", v2+"/systems/sys-1")
	req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
	if status, body, _ := send(t, req); status >= 500 {
		t.Fatalf("/authz/nginx with a key as method: %d %s", status, body)
	}
	if !strings.Contains(f.Debug.String(), `"msg":"request"`) {
		t.Fatalf("no request log at debug level:\n%s", f.Debug)
	}
	if !strings.Contains(f.DecisionLog(), "REDACTED") {
		t.Errorf("the decision log redacted nothing: were the keys in paths logged at all?\n%s", f.DecisionLog())
	}
	for what, text := range map[string]string{"debug log": f.Debug.String(), "decision log": f.DecisionLog()} {
		checkNoKeyMaterial(t, what, text, f.Booking)
		if strings.Contains(text, b64[44:]) {
			t.Errorf("%s holds the base64 of the key", what)
		}
	}
}

// TestDecisionCacheBoundedUnderFlood sends a flood of distinct long anonymous paths (each a
// new decision) through the server: the decision cache and the host cache keep within their
// bounds in bytes while about 40 times the decision bound passes through.
func TestDecisionCacheBoundedUnderFlood(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	b, err := opa.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := opa.New(t.Context(), b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 128 << 10
	opts := cache.Options{KeyBytes: 64 << 10, UnknownKeyBytes: 64 << 10, HostBytes: 16 << 10}
	logger := slog.New(slog.DiscardHandler)
	a := authz.New(store, eng, authz.Options{Cache: opts, DecisionBytes: bound, Usage: keys.NewUsageRecorder(store, logger), Logger: logger})
	cached, decisions := a.StoreCache(), a.DecisionCache()
	srv := server.New(server.Deps{Store: store, Engine: eng, Version: "test", Logger: logger, Authorizer: a})
	long := strings.Repeat("x", 1500)
	var sent int
	for i := range 3_000 {
		path := fmt.Sprintf("%s/systems/sys-%d-%s", v2, i, long)
		req := httptest.NewRequest("GET", path, nil)
		req.Host = fmt.Sprintf("h%d.example.com", i%500)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("GET %s...: %d %s", path[:40], w.Code, w.Body)
		}
		sent += len(path)
		if used, _ := decisions.Cost(); used > bound {
			t.Fatalf("after %d requests the decision cache accounts %d bytes, over its bound of %d", i+1, used, bound)
		}
		if c := cached.Cost(); c.HostBytes > opts.HostBytes {
			t.Fatalf("after %d requests the host cache accounts %d bytes, over its bound of %d", i+1, c.HostBytes, opts.HostBytes)
		}
	}
	used, n := decisions.Cost()
	if _, misses := decisions.Stats(); misses < 3_000 || n == 0 || sent < 30*bound {
		t.Fatalf("%d bytes of paths sent, %d misses: the cache holds %d decisions, %d bytes", sent, misses, n, used)
	}
	t.Logf("%d bytes of paths sent; the decision cache holds %d decisions, %d bytes (bound %d)", sent, n, used, bound)
}

// TestGatewayRefusalsCounted: forward-auth requests refused before any decision (a header the
// gateway must set is missing, or the retired /authz) are counted apart, by endpoint and
// reason, with the endpoint's name whatever path the request carried, and are no decisions.
func TestGatewayRefusalsCounted(t *testing.T) {
	f := newFixture(t)
	for _, r := range []struct {
		path   string
		header map[string]string
	}{
		{"/authz/nginx", map[string]string{"X-Original-Method": "GET", "X-Original-Remote-Addr": "192.0.2.1"}}, // no X-Original-URI
		{"/authz/nginx", map[string]string{"X-Original-URI": v2, "X-Original-Method": "GET"}},                  // no client address
		{"/authz/traefik", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": v2}},              // no X-Forwarded-Host
		{"/authz", nil},
		{"/authz/nginx2/any/path", nil},
	} {
		req := newRequest(t, "GET", f.URL+r.path, nil)
		req.Host = "localhost"
		for k, v := range r.header {
			req.Header.Set(k, v)
		}
		if status, body, _ := send(t, req); status != http.StatusForbidden {
			t.Fatalf("GET %s: %d %s, want 403", r.path, status, body)
		}
	}
	_, body, _ := send(t, newRequest(t, "GET", f.URL+"/metrics", nil))
	text := string(body)
	for _, want := range []string{
		`keyauthz_gateway_refusals_total{endpoint="/authz/nginx",reason="missing_header"} 2`,
		`keyauthz_gateway_refusals_total{endpoint="/authz/traefik",reason="missing_header"} 1`,
		`keyauthz_gateway_refusals_total{endpoint="/authz",reason="retired_endpoint"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, `keyauthz_decisions_total{`) {
		t.Error("a refusal before any decision was counted as a decision")
	}
}

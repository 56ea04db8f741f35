package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

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

// TestDecisionLog checks that each decision writes one JSON line with the fields of design §7,
// and no key material.
func TestDecisionLog(t *testing.T) {
	f := newFixture(t)
	c := decisionCase{key: booking, via: "query", method: "get", path: v2 + "//systems/./sys-1/?x=1", status: 200}
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
		"method": "GET", "path": v2 + "/systems/sys-1", "host": "localhost", "protocol": "http",
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
		if strings.Contains(text, k) || (secret != "" && strings.Contains(text, secret)) {
			t.Errorf("%s contains key material of %s...", what, k[:8])
		}
	}
	if regexp.MustCompile(`(?i)api-key=[^R&"]`).MatchString(text) {
		t.Errorf("%s contains an api-key parameter value", what)
	}
}

func TestRedactQuery(t *testing.T) {
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
		{"apikey=abc", "apikey=abc"},
	} {
		if got := server.RedactQuery(c.in); got != c.want {
			t.Errorf("RedactQuery(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRequestLogRedactsKey drives every credential channel with debug logging on and checks
// that Gin's request log (and the decision log) never holds the key.
func TestRequestLogRedactsKey(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{
		v2 + "/systems/sys-1?api-key=" + f.Booking,
		v2 + "/systems/sys-1?%61pi-key=" + f.Booking,
		"/authz" + v2 + "/systems/sys-1?zone=1&api-key=" + f.Booking,
	} {
		req := newRequest(t, "GET", f.URL+path, nil)
		req.Host = "localhost"
		status, body, _ := send(t, req)
		if status >= 500 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
	}
	if !strings.Contains(f.Debug.String(), `"msg":"request"`) {
		t.Fatalf("no request log at debug level:\n%s", f.Debug)
	}
	checkNoKeyMaterial(t, "debug log", f.Debug.String(), f.Booking)
	checkNoKeyMaterial(t, "decision log", f.DecisionLog(), f.Booking)
}

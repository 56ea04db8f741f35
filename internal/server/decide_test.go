package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// decisionCase is one request to judge, as a gateway would describe it, and the decision the
// policy gives it (docs/policy-contract.md#rule-order).
type decisionCase struct {
	note     string
	key      func(*fixture) string // "" for no credential
	via      string                // "header" (default), "query" or "cookie"
	method   string
	path     string // may carry a query
	host     string // default localhost
	ws       bool   // a websocket upgrade
	status   int
	contains string // a substring of the message (deny) or "" to skip
}

func booking(f *fixture) string { return f.Booking }
func kiosk(f *fixture) string   { return f.Kiosk }
func admin(f *fixture) string   { return f.Admin }
func other(f *fixture) string   { return f.Other }
func expired(f *fixture) string { return f.Expired }
func garbage(*fixture) string   { return "0123456789abcdef0123456789abcdef.not-a-secret" }

const v2 = "/api/engine/v2"

// decisionCases are the seed's two keys (booking panel: users.read, systems.read, control,
// zones.read, metadata.read, a plain user; map kiosk: public.read) against
// docs/policy-contract.md#rule-order and #the-default-table.
var decisionCases = []decisionCase{
	// Booking panel: what it needs.
	{note: "booking/list systems", key: booking, method: "GET", path: v2 + "/systems", status: 200},
	{note: "booking/show system", key: booking, method: "GET", path: v2 + "/systems/sys-1", status: 200},
	{note: "booking/show system lower-case header", key: booking, via: "lower", method: "GET", path: v2 + "/systems/sys-1", status: 200},
	{note: "booking/key in query", key: booking, via: "query", method: "GET", path: v2 + "/systems/sys-1", status: 200},
	{note: "booking/key in cookie", key: booking, via: "cookie", method: "GET", path: v2 + "/systems/sys-1", status: 200},
	{note: "booking/users read", key: booking, method: "GET", path: v2 + "/users/u-1", status: 200},
	{note: "booking/zones read", key: booking, method: "GET", path: v2 + "/zones", status: 200},
	{note: "booking/metadata read", key: booking, method: "GET", path: v2 + "/metadata/zone-1", status: 200},
	{note: "booking/control types", key: booking, method: "GET", path: v2 + "/systems/sys-1/types", status: 200},
	{note: "booking/control execute", key: booking, method: "POST", path: v2 + "/systems/sys-1/Display_1/power", status: 200},
	{note: "booking/control websocket", key: booking, ws: true, method: "GET", path: v2 + "/systems/control", status: 200},
	{note: "booking/inspect", key: booking, method: "GET", path: v2 + "/api_keys/inspect", status: 200},
	{note: "booking/anonymous root", key: booking, method: "GET", path: v2, status: 200},
	// Booking panel: what it must not do.
	{note: "booking/delete system", key: booking, method: "DELETE", path: v2 + "/systems/sys-1", status: 403, contains: "missing scope: systems.write or public.write"},
	{note: "booking/create user", key: booking, method: "POST", path: v2 + "/users", status: 403, contains: "missing scope: users.write or public.write"},
	{note: "booking/update metadata", key: booking, method: "PUT", path: v2 + "/metadata/zone-1", status: 403, contains: "missing scope: metadata.write or public.write"},
	{note: "booking/module state needs support", key: booking, method: "GET", path: v2 + "/systems/sys-1/Display_1", status: 403, contains: "requires support permissions"},
	{note: "booking/api keys", key: booking, method: "GET", path: v2 + "/api_keys", status: 403, contains: "missing scope: api_keys.read or public.read"},
	{note: "booking/dot-dot is ambiguous", key: booking, method: "GET", path: v2 + "/systems/%2e%2e/api_keys", status: 403, contains: "ambiguous path"},
	{note: "booking/staff api needs public", key: booking, method: "GET", path: "/api/staff/v1/bookings", status: 403, contains: "missing scope: public.read"},
	{note: "booking/other host", key: booking, method: "GET", path: v2 + "/systems/sys-1", host: "other.example", status: 401, contains: "authority domain does not match token's"},
	{note: "booking/unknown host", key: booking, method: "GET", path: v2 + "/systems/sys-1", host: "nowhere.example", status: 401, contains: "authority not found"},
	// Map kiosk.
	{note: "kiosk/staff api read", key: kiosk, method: "GET", path: "/api/staff/v1/bookings?zone=z1", status: 200},
	{note: "kiosk/show system", key: kiosk, method: "GET", path: v2 + "/systems/sys-1", status: 200},
	{note: "kiosk/unlisted route read", key: kiosk, method: "GET", path: "/maps/level-1.svg", status: 200},
	{note: "kiosk/unlisted route write", key: kiosk, method: "POST", path: "/maps/level-1.svg", status: 403, contains: "missing scope: public.write"},
	{note: "kiosk/control execute", key: kiosk, method: "POST", path: v2 + "/systems/sys-1/Display_1/power", status: 403, contains: "missing scope: control.write or systems.write or public.write"},
	{note: "kiosk/public does not lift the support gate", key: kiosk, method: "GET", path: v2 + "/systems/sys-1/Display_1", status: 403, contains: "requires support permissions"},
	{note: "kiosk/websocket control", key: kiosk, ws: true, method: "GET", path: v2 + "/systems/control", status: 403, contains: "write"},
	// Admin.
	{note: "admin/api keys", key: admin, method: "GET", path: v2 + "/api_keys", status: 200},
	{note: "admin/api keys via dot-dot is ambiguous", key: admin, method: "GET", path: v2 + "/systems/%2e%2e/api_keys", status: 403, contains: "ambiguous path"},
	// Authentication failures.
	{note: "no key", method: "GET", path: v2 + "/systems/sys-1", status: 401, contains: "missing credentials"},
	{note: "no key/anonymous root", method: "GET", path: v2, status: 200},
	{note: "key of another domain", key: other, method: "GET", path: v2 + "/systems/sys-1", status: 401, contains: "authority domain does not match token's"},
	{note: "unknown key", key: garbage, method: "GET", path: v2 + "/systems/sys-1", status: 401, contains: "unknown X-API-Key"},
	{note: "unknown key in query", key: garbage, via: "query", method: "GET", path: v2 + "/systems/sys-1", status: 401, contains: "unknown X-API-Key"},
	{note: "empty header counts as present", key: func(*fixture) string { return "" }, via: "empty", method: "GET", path: v2, status: 401, contains: "unknown X-API-Key"},
	{note: "expired key", key: expired, method: "GET", path: v2 + "/systems/sys-1", status: 401, contains: "API key has expired"},
	{note: "header wins over query", key: garbage, via: "header+query", method: "GET", path: v2 + "/systems/sys-1", status: 401, contains: "unknown X-API-Key"},
}

// credential returns the path (with the key in the query when via says so) and the headers
// that carry c's credential, by their lower-case names.
func (c decisionCase) credential(f *fixture) (path string, headers map[string]string) {
	path, headers = c.path, map[string]string{}
	if c.key == nil {
		return path, headers
	}
	k := c.key(f)
	addQuery := func(k string) {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "api-key=" + url.QueryEscape(k)
	}
	switch c.via {
	case "", "empty":
		headers["X-API-Key"] = k
	case "lower":
		headers["x-api-key"] = k
	case "query":
		addQuery(k)
	case "cookie":
		headers["cookie"] = "theme=dark; api-key=" + k
	case "header+query":
		headers["X-API-Key"] = k
		addQuery(f.Booking)
	}
	return path, headers
}

func (c decisionCase) hostname() string {
	if c.host == "" {
		return "localhost"
	}
	return c.host
}

// verdict is what every endpoint must agree on.
type verdict struct {
	Allow   bool
	Status  int
	Message string
	Headers map[string]string
}

// askDataAPI asks POST /v1/data/keyauthz/decision.
func askDataAPI(t *testing.T, f *fixture, c decisionCase) verdict {
	t.Helper()
	path, headers := c.credential(f)
	in := map[string]any{"method": c.method, "path": path, "host": c.hostname(), "headers": headers}
	if c.ws {
		in["protocol"] = "websocket"
	}
	status, body, _ := send(t, newRequest(t, "POST", f.URL+"/v1/data/keyauthz/decision", map[string]any{"input": in}))
	if status != http.StatusOK {
		t.Fatalf("decision endpoint: status %d: %s", status, body)
	}
	var out struct {
		Result struct {
			Allow       bool              `json:"allow"`
			Status      int               `json:"status"`
			Message     string            `json:"message"`
			KeyID       string            `json:"key_id"`
			UserID      string            `json:"user_id"`
			AuthorityID string            `json:"authority_id"`
			Permissions string            `json:"permissions"`
			Scopes      []string          `json:"scopes"`
			Headers     map[string]string `json:"headers"`
		} `json:"result"`
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decision body %s: %v", body, err)
	}
	if len(out.DecisionID) != 36 {
		t.Errorf("decision_id = %q, want a uuid", out.DecisionID)
	}
	r := out.Result
	if r.Allow && r.KeyID != "" && (r.Headers["X-Auth-User-Id"] != r.UserID || r.Headers["X-Auth-Key-Id"] != r.KeyID || r.UserID == "" || r.KeyID == "" || r.AuthorityID == "") {
		t.Errorf("allow without a consistent identity: %s", body)
	}
	if !r.Allow && len(r.Headers) != 0 {
		t.Errorf("deny with identity headers: %s", body)
	}

	// /allow gives the same answer as a boolean.
	status, body, _ = send(t, newRequest(t, "POST", f.URL+"/v1/data/keyauthz/allow", map[string]any{"input": in}))
	var b struct {
		Result *bool `json:"result"`
	}
	if err := json.Unmarshal(body, &b); status != 200 || err != nil || b.Result == nil || *b.Result != r.Allow {
		t.Errorf("allow endpoint: status %d body %s, want result %v", status, body, r.Allow)
	}
	return verdict{Allow: r.Allow, Status: r.Status, Message: r.Message, Headers: r.Headers}
}

// gatewayStyles build the forward-auth request each gateway sends to its endpoint, as the
// configurations of docs/gateways.md make it send it.
var gatewayStyles = map[string]func(t *testing.T, f *fixture, c decisionCase) *http.Request{
	"nginx": func(t *testing.T, f *fixture, c decisionCase) *http.Request {
		path, headers := c.credential(f)
		req := newRequest(t, "GET", f.URL+"/authz/nginx", nil)
		req.Header.Set("X-Original-Method", c.method)
		req.Header.Set("X-Original-URI", path)
		req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
		req.Host = c.hostname()
		setHeaders(req, headers, c.ws)
		return req
	},
	"traefik": func(t *testing.T, f *fixture, c decisionCase) *http.Request {
		path, headers := c.credential(f)
		req := newRequest(t, "GET", f.URL+"/authz/traefik", nil)
		req.Header.Set("X-Forwarded-Method", c.method)
		req.Header.Set("X-Forwarded-Uri", path)
		req.Header.Set("X-Forwarded-Host", c.hostname())
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Host = "keyauthz:8080"
		setHeaders(req, headers, c.ws)
		return req
	},
	"envoy": func(t *testing.T, f *fixture, c decisionCase) *http.Request {
		path, headers := c.credential(f)
		req := newRequest(t, c.method, f.URL+"/authz/envoy"+path, nil)
		req.Host = c.hostname()
		setHeaders(req, headers, c.ws)
		return req
	},
}

func setHeaders(req *http.Request, headers map[string]string, ws bool) {
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if ws {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
	}
}

// askForwardAuth asks forward auth with req, built the way style does (gatewayStyles).
func askForwardAuth(t *testing.T, f *fixture, style string, c decisionCase, req *http.Request) verdict {
	t.Helper()
	status, body, h := send(t, req)
	if status >= 300 && status < 400 {
		t.Fatalf("forward auth answered with a redirect %d", status)
	}
	if h.Get("X-Decision-Id") == "" {
		t.Errorf("no X-Decision-Id")
	}
	v := verdict{Allow: status == 200, Status: status, Headers: map[string]string{}}
	if v.Allow {
		for _, name := range []string{"X-Auth-User-Id", "X-Auth-Key-Id", "X-Auth-Authority-Id", "X-Auth-Permissions", "X-Auth-Scopes"} {
			if _, ok := h[name]; ok {
				v.Headers[name] = h.Get(name)
			}
		}
		return v
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("deny Content-Type %q, want JSON", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("deny body %q: %v", body, err)
	}
	v.Message = e.Error
	if h.Get("X-Auth-Error") != e.Error {
		t.Errorf("X-Auth-Error %q, body error %q", h.Get("X-Auth-Error"), e.Error)
	}
	for name := range h {
		if strings.HasPrefix(name, "X-Auth-") && name != "X-Auth-Error" {
			t.Errorf("deny carries %s", name)
		}
	}
	return v
}

func TestDecisionEndpoints(t *testing.T) {
	f := newFixture(t)
	for _, c := range decisionCases {
		t.Run(c.note, func(t *testing.T) {
			t.Parallel()
			want := verdict{Allow: c.status == 200, Status: c.status}
			got := askDataAPI(t, f, c)
			if got.Allow != want.Allow || got.Status != want.Status {
				t.Fatalf("data API: allow %v status %d (%q), want allow %v status %d", got.Allow, got.Status, got.Message, want.Allow, want.Status)
			}
			if c.contains != "" && !strings.Contains(got.Message, c.contains) {
				t.Errorf("data API message %q, want it to contain %q", got.Message, c.contains)
			}
			if got.Allow {
				checkIdentity(t, f, c, got.Headers)
			}
			for _, style := range []string{"nginx", "traefik", "envoy"} {
				fa := askForwardAuth(t, f, style, c, gatewayStyles[style](t, f, c))
				if fa.Allow != got.Allow || fa.Status != got.Status {
					t.Errorf("%s: allow %v status %d (%q), data API said allow %v status %d", style, fa.Allow, fa.Status, fa.Message, got.Allow, got.Status)
				}
				if !fa.Allow && fa.Message != got.Message {
					t.Errorf("%s: message %q, data API said %q", style, fa.Message, got.Message)
				}
				if fa.Allow {
					checkIdentity(t, f, c, fa.Headers)
				}
			}
		})
	}
}

// checkIdentity checks the identity headers of an allow: the caller's ids for a key, none
// (but the permission level) for an anonymous route.
func checkIdentity(t *testing.T, f *fixture, c decisionCase, h map[string]string) {
	t.Helper()
	if c.key == nil {
		if h["X-Auth-User-Id"] != "" || h["X-Auth-Key-Id"] != "" {
			t.Errorf("anonymous allow carries an identity: %v", h)
		}
		return
	}
	k := c.key(f)
	id, _, _ := strings.Cut(k, ".")
	want := map[string]string{"X-Auth-Key-Id": id, "X-Auth-Authority-Id": f.Domain.ID}
	switch k {
	case f.Booking:
		want["X-Auth-User-Id"] = f.PanelUser.ID
		want["X-Auth-Permissions"] = "user"
		want["X-Auth-Scopes"] = "users.read,systems.read,control,zones.read,metadata.read"
	case f.Kiosk:
		want["X-Auth-User-Id"] = f.PanelUser.ID
		want["X-Auth-Permissions"] = "user"
		want["X-Auth-Scopes"] = "public.read"
	case f.Admin:
		want["X-Auth-User-Id"] = f.AdminUser.ID
		want["X-Auth-Permissions"] = "admin"
	}
	for name, v := range want {
		if h[name] != v {
			t.Errorf("%s = %q, want %q", name, h[name], v)
		}
	}
	for name, v := range h {
		if strings.Contains(v, k) || (len(k) > 33 && strings.Contains(v, k[33:])) {
			t.Errorf("%s carries the key", name)
		}
	}
}

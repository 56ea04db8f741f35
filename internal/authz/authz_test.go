package authz

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

func TestCredential(t *testing.T) {
	tests := []struct {
		note   string
		header http.Header
		query  url.Values
		want   [3]any // key, source, present
	}{
		{"none", http.Header{}, url.Values{}, [3]any{"", "", false}},
		{"header", http.Header{"X-Api-Key": {"h"}}, url.Values{}, [3]any{"h", SourceHeader, true}},
		{"empty header counts", http.Header{"X-Api-Key": {""}}, url.Values{"api-key": {"q"}}, [3]any{"", SourceHeader, true}},
		{"header before query", http.Header{"X-Api-Key": {"h"}}, url.Values{"api-key": {"q"}}, [3]any{"h", SourceHeader, true}},
		{"query", http.Header{}, url.Values{"api-key": {"q", "q2"}}, [3]any{"q", SourceQuery, true}},
		{"empty query counts", http.Header{"Cookie": {"api-key=c"}}, url.Values{"api-key": {""}}, [3]any{"", SourceQuery, true}},
		{"query before cookie", http.Header{"Cookie": {"api-key=c"}}, url.Values{"api-key": {"q"}}, [3]any{"q", SourceQuery, true}},
		{"cookie", http.Header{"Cookie": {"a=b; api-key=c"}}, url.Values{}, [3]any{"c", SourceCookie, true}},
		{"other cookie only", http.Header{"Cookie": {"a=b"}}, url.Values{}, [3]any{"", "", false}},
		{"other query only", http.Header{}, url.Values{"api_key": {"x"}}, [3]any{"", "", false}},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			k, s, p := Credential(tc.header, tc.query)
			if diff := cmp.Diff(tc.want, [3]any{k, s, p}); diff != "" {
				t.Errorf("Credential (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestParts(t *testing.T) {
	hosts := map[string]string{
		"localhost":           "localhost",
		"LocalHost:8080":      "localhost",
		"localhost.":          "localhost",
		"[::1]:8080":          "::1",
		"[::1]":               "::1",
		"acme.example.com":    "acme.example.com",
		"127.0.0.1:80":        "127.0.0.1",
		"localhost:65535":     "localhost",
		"localhost:99999":     "",
		"localhost:+80":       "",
		"":                    "",
		"b.test:80@localhost": "", // userinfo: one parser takes b.test, another localhost
		"b.test@localhost":    "",
		"localhost:80:80":     "",
		"localhost:http":      "",
		"localhost/x":         "",
		"local host":          "",
		"[127.0.0.1]":         "", // brackets hold only IPv6
		"[::1]x":              "",
		"[::1":                "",
		":8080":               "",
		"localhost\x00":       "",
	}
	for in, want := range hosts {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
	}
	targets := map[string]string{
		"/a?b":                 "/a?b",
		"http://h.example/a?b": "/a?b",
		"HTTPS://h.example":    "/",
		"http://h.example?x":   "/?x",
		"ws://h/a/..;/b":       "/a/..;/b",
		"*":                    "*",
		"":                     "",
	}
	for in, want := range targets {
		if got := RequestTarget(in); got != want {
			t.Errorf("RequestTarget(%q) = %q, want %q", in, got, want)
		}
	}
	ids := map[string]string{
		"0123456789abcdef0123456789abcdef.secret": "0123456789abcdef0123456789abcdef",
		"0123456789ABCDEF0123456789abcdef.secret": "",
		"short.secret":                     "",
		"0123456789abcdef0123456789abcdef": "",
	}
	for in, want := range ids {
		if got := KeyID(in); got != want {
			t.Errorf("KeyID(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Protocol(http.Header{"Upgrade": {"WebSocket"}}); got != "websocket" {
		t.Errorf("Protocol(Upgrade: WebSocket) = %q", got)
	}
	if got := Protocol(http.Header{}); got != "http" {
		t.Errorf("Protocol() = %q", got)
	}
}

// TestAuthorize drives the credential path with a real (in-memory) store and the real built-in
// policy: what the policy sees, and the denials Go decides itself.
func TestAuthorize(t *testing.T) {
	ctx := t.Context()
	store, err := badgerstore.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	b, err := opa.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := opa.New(ctx, b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	must(t, store.CreateDomain(ctx, d))
	u := &keys.User{AuthorityID: d.ID, Name: "Panel", Email: "panel@acme.example.com", Groups: []string{"sys-1"}}
	must(t, store.CreateUser(ctx, u))
	k := &keys.APIKey{Name: "panel", UserID: u.ID, Scopes: []string{"systems.read", "control"}}
	secret, err := store.CreateKey(ctx, k)
	must(t, err)
	soon := time.Now().Add(time.Hour).Unix()
	expiring := &keys.APIKey{Name: "expiring", UserID: u.ID, Scopes: []string{"public"}, ExpiresAt: &soon}
	expiringSecret, err := store.CreateKey(ctx, expiring)
	must(t, err)

	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	// clock is the Authorizer's clock; a case may set it (the cases run one after another).
	var clock func() time.Time
	a := New(store, engine, Options{Now: func() time.Time {
		if clock != nil {
			return clock()
		}
		return time.Now()
	}})
	key := string(secret)
	tests := []struct {
		note    string
		req     Request
		now     func() time.Time
		want    opa.Decision
		wantKey string
	}{
		{
			note:    "allowed, key from the query, which the policy does not see",
			req:     Request{Method: "GET", URI: "/api/engine/v2/systems/sys-1?api-key=" + url.QueryEscape(key) + "&x=1", Host: "ACME.example.com:443", Header: http.Header{}},
			want:    opa.Decision{Allow: true, Status: 200, Message: "allowed", Route: opa.Route{Resource: "systems", Access: "read", Gate: "none"}, Permissions: "user"},
			wantKey: k.ID,
		},
		{
			note: "an ambiguous path is refused before the key is looked up or the policy runs",
			req:  Request{Method: "GET", URI: "/api/engine/v2/systems/%2e%2e/api_keys", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key}}},
			want: opa.Decision{Status: 403, Message: MsgAmbiguousPath},
		},
		{
			note: "a method override header is refused",
			req:  Request{Method: "POST", URI: "/api/engine/v2/systems/sys-1", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key}, "X-Http-Method-Override": {"DELETE"}}},
			want: opa.Decision{Status: 403, Message: MsgMethodOverride},
		},
		{
			note: "a _method parameter is refused",
			req:  Request{Method: "POST", URI: "/api/engine/v2/systems/sys-1?_METHOD=delete", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key}}},
			want: opa.Decision{Status: 403, Message: MsgMethodOverride},
		},
		{
			note:    "an Upgrade header makes a websocket whatever protocol the description names",
			req:     Request{Method: "GET", URI: "/api/engine/v2/systems/sys-1", Host: "acme.example.com", Protocol: "http", Header: http.Header{"Cookie": {"api-key=" + key}, "Upgrade": {"websocket"}, "Sec-Fetch-Site": {"cross-site"}}},
			want:    opa.Decision{Status: 403, Message: "cross-site request with a cookie or URL key", Route: opa.Route{Resource: "systems", Access: "read", Gate: "none"}, Permissions: "user"},
			wantKey: k.ID,
		},
		{
			note: "an ambiguous path is refused even on the anonymous route",
			req:  Request{Method: "GET", URI: "/api/engine/v2;x", Host: "acme.example.com", Header: http.Header{}},
			want: opa.Decision{Status: 403, Message: MsgAmbiguousPath},
		},
		{
			note:    "an absolute-form target is judged by its path",
			req:     Request{Method: "GET", URI: "http://acme.example.com/api/engine/v2/api_keys", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key}}},
			want:    opa.Decision{Status: 403, Message: "missing scope: api_keys.read or public.read", Route: opa.Route{Resource: "api_keys", Access: "read", Gate: "admin"}, Permissions: "user"},
			wantKey: k.ID,
		},
		{
			note:    "a host with userinfo names no domain",
			req:     Request{Method: "GET", URI: "/api/engine/v2/systems", Host: "acme.example.com:80@other.example.com", Header: http.Header{"X-Api-Key": {key}}},
			want:    opa.Decision{Status: 401, Message: "authority not found", Route: opa.Route{Resource: "systems", Access: "read", Gate: "none"}, Permissions: "user"},
			wantKey: k.ID,
		},
		{
			note:    "websocket upgrade on the control route needs write",
			req:     Request{Method: "GET", URI: "/api/engine/v2/systems/control", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key}, "Upgrade": {"websocket"}}},
			want:    opa.Decision{Allow: true, Status: 200, Message: "allowed", Route: opa.Route{Resource: "control", Access: "write", Gate: "none"}, Permissions: "user"},
			wantKey: k.ID,
		},
		{
			note: "unknown key",
			req:  Request{Method: "GET", URI: "/", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}},
			want: opa.Decision{Status: 401, Message: MsgUnknownKey},
		},
		{
			note: "malformed key",
			req:  Request{Method: "GET", URI: "/", Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key + "\x00"}}},
			want: opa.Decision{Status: 401, Message: MsgUnknownKey},
		},
		{
			note: "expired key",
			req:  Request{Method: "GET", URI: "/", Host: "acme.example.com", Header: http.Header{"Cookie": {"api-key=" + string(expiringSecret)}}},
			now:  later,
			want: opa.Decision{Status: 401, Message: MsgExpiredKey},
		},
		{
			note:    "no domain for the host",
			req:     Request{Method: "GET", URI: "/api/engine/v2/systems", Host: "other.example.com", Header: http.Header{"X-Api-Key": {key}}},
			want:    opa.Decision{Status: 401, Message: "authority not found", Route: opa.Route{Resource: "systems", Access: "read", Gate: "none"}, Permissions: "user"},
			wantKey: k.ID,
		},
	}
	t.Run("a domain with an IPv6 host", func(t *testing.T) {
		// Stored as "[::1]", asked for as the Host header "[::1]:8080": the two normalisations
		// (the record's and the request's) must meet.
		d6 := &keys.Domain{Name: "v6", Domain: "[::1]"}
		must(t, store.CreateDomain(ctx, d6))
		u6 := &keys.User{AuthorityID: d6.ID, Name: "v6", Email: "v6@example.com"}
		must(t, store.CreateUser(ctx, u6))
		k6 := &keys.APIKey{Name: "v6", UserID: u6.ID, Scopes: []string{"systems.read"}}
		s6, err := store.CreateKey(ctx, k6)
		must(t, err)
		res := New(store, engine, Options{}).Authorize(ctx, Request{Method: "GET", URI: "/api/engine/v2/systems/sys-1", Host: "[::1]:8080", Header: http.Header{"X-Api-Key": {string(s6)}}})
		if !res.Decision.Allow {
			t.Errorf("GET on the IPv6 domain's host: %+v, want an allow", res.Decision)
		}
	})
	t.Run("input", func(t *testing.T) {
		// The method goes to the policy as received, and cross_site as the browser said.
		res := a.Authorize(ctx, Request{Method: "delete", URI: "/api/engine/v2/zones/z-1", Host: "acme.example.com:8080",
			Header: http.Header{"Cookie": {"api-key=" + key}, "Origin": {"https://evil.example"}}})
		want := opa.Request{Method: "delete", Path: "/api/engine/v2/zones/z-1", Host: "acme.example.com", Protocol: "http", Query: map[string][]string{}, CrossSite: true}
		if diff := cmp.Diff(want, res.Input.Request); diff != "" {
			t.Errorf("policy input (-want +got):\n%s", diff)
		}
		if res.Decision.Allow {
			t.Errorf("a lower-case method was allowed: %+v", res.Decision)
		}
	})
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			clock = tc.now
			res := a.Authorize(context.Background(), tc.req)
			if diff := cmp.Diff(tc.want, res.Decision); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			gotKey := ""
			if res.Key != nil {
				gotKey = res.Key.ID
			}
			if gotKey != tc.wantKey {
				t.Errorf("key %q, want %q", gotKey, tc.wantKey)
			}
			if _, ok := res.Input.Request.Query[KeyParam]; ok {
				t.Errorf("the policy input holds the api-key parameter: %v", res.Input.Request.Query)
			}
		})
	}
}

func TestCrossSite(t *testing.T) {
	tests := []struct {
		note   string
		header http.Header
		want   bool
	}{
		{"no browser headers", http.Header{}, false},
		{"same-origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, false},
		{"typed into the address bar", http.Header{"Sec-Fetch-Site": {"none"}}, false},
		{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}, true},
		{"same-site is another origin", http.Header{"Sec-Fetch-Site": {"same-site"}}, true},
		{"an unknown value", http.Header{"Sec-Fetch-Site": {"bogus"}}, true},
		{"origin of this host", http.Header{"Origin": {"https://acme.example.com"}}, false},
		{"origin of this host, another port", http.Header{"Origin": {"http://ACME.example.com:8443"}}, false},
		{"origin of another host", http.Header{"Origin": {"https://evil.example"}}, true},
		{"origin of a sibling", http.Header{"Origin": {"https://x.acme.example.com"}}, true},
		{"opaque origin", http.Header{"Origin": {"null"}}, true},
		{"origin with userinfo", http.Header{"Origin": {"https://acme.example.com@evil.example"}}, true},
		{"same-origin but origin elsewhere", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"https://evil.example"}}, true},
	}
	for _, tc := range tests {
		if got := CrossSite(tc.header, "acme.example.com"); got != tc.want {
			t.Errorf("%s: CrossSite(%v) = %v, want %v", tc.note, tc.header, got, tc.want)
		}
	}
	// With a port in the Host header (a direct call, Envoy, the Data API), the Origin's port
	// must match too, its scheme's default port when it names none.
	for _, c := range []struct {
		host, origin string
		want         bool
	}{
		{"acme.example.com:8080", "http://acme.example.com:8080", false},
		{"acme.example.com:8080", "http://acme.example.com:9999", true},
		{"acme.example.com:443", "https://acme.example.com", false},
		{"acme.example.com:80", "https://acme.example.com", true},
		{"acme.example.com", "http://acme.example.com:9999", false}, // nginx's $host has no port
	} {
		if got := CrossSite(http.Header{"Origin": {c.origin}}, c.host); got != c.want {
			t.Errorf("CrossSite(Origin %s, Host %s) = %v, want %v", c.origin, c.host, got, c.want)
		}
	}
	if !CrossSite(http.Header{"Origin": {"https://acme.example.com"}}, "") {
		t.Error("an Origin on a request without a valid host must count as cross-site")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// downStore is a key store that cannot be reached (an etcd cluster without a quorum).
type downStore struct{ err error }

func (d downStore) KeyForAuth(context.Context, string) (*keys.APIKey, *keys.User, *keys.Domain, error) {
	return nil, nil, nil, d.err
}
func (d downStore) DomainByHost(context.Context, string) (*keys.Domain, error) { return nil, d.err }
func (downStore) OnChange(func(keys.Change))                                   {}

// TestStoreFaultsDeny: a store that fails denies, 503 when it is unreachable (try again) and
// 500 for any other fault, whether the key or the host's domain was being read.
func TestStoreFaultsDeny(t *testing.T) {
	b, err := opa.Builtin()
	must(t, err)
	engine, err := opa.New(t.Context(), b, opa.Options{Timeout: 10 * time.Second})
	must(t, err)
	key := "0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, c := range []struct {
		err    error
		status int
		msg    string
	}{
		{keys.Errorf(keys.EUNAVAILABLE, "store unavailable"), 503, MsgUnavailable},
		{errors.New("disk on fire"), 500, MsgInternal},
	} {
		a := New(downStore{c.err}, engine, Options{})
		for _, h := range []http.Header{{"X-Api-Key": {key}}, {}} {
			res := a.Authorize(t.Context(), Request{Method: "GET", URI: "/api/engine/v2/systems", Host: "acme.example.com", Header: h})
			if res.Decision.Allow || res.Decision.Status != c.status || res.Decision.Message != c.msg {
				t.Errorf("%v, headers %v: %+v, want a deny %d %q", c.err, h, res.Decision, c.status, c.msg)
			}
		}
	}
}

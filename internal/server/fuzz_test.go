package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/internal/server"
)

// FuzzDataDecision feeds arbitrary bodies to POST /v1/data/keyauthz/decision. Whatever the
// body, the answer is a 200 decision or a 4xx JSON error, never a 500 or a panic, and no body
// can be allowed except on the anonymous health route: a fuzzer cannot forge a key.
func FuzzDataDecision(f *testing.F) {
	for _, seed := range []string{
		`{"input":{"method":"GET","path":"/api/engine/v2","host":"localhost"}}`,
		`{"input":{"method":"GET","path":"/api/engine/v2/systems/sys-1?api-key=x","host":"localhost","headers":{"x-api-key":"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}`,
		`{"input":{"method":"DELETE","path":"/api/engine/v2/systems/%2e%2e/api_keys","host":"LOCALHOST:80","headers":{"cookie":["api-key=a.b","x=y"]}}}`,
		`{"input":{"method":"GET","path":"//a/../../b/./c/?q=1#f","protocol":"websocket","headers":{"upgrade":"websocket"}}}`,
		`{"input":null}`, `{}`, `[]`, `{"input":{"headers":{"x":1}}}`, "\x00", "",
	} {
		f.Add([]byte(seed))
	}
	store, err := badgerstore.OpenInMemory()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	if err := store.CreateDomain(f.Context(), &keys.Domain{Name: "localhost", Domain: "localhost"}); err != nil {
		f.Fatal(err)
	}
	b, err := opa.Builtin()
	if err != nil {
		f.Fatal(err)
	}
	engine, err := opa.New(f.Context(), b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	srv := server.New(server.Deps{Store: store, Engine: engine, Authorizer: newAuthorizer(store, engine, nil, nil)})

	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/data/keyauthz/decision", bytes.NewReader(body))
		srv.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusOK:
			var out struct {
				Result struct {
					Allow   bool   `json:"allow"`
					Message string `json:"message"`
				} `json:"result"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 with a body that is not a decision: %q", rec.Body)
			}
			if out.Result.Allow && out.Result.Message != "anonymous route" {
				t.Fatalf("allowed without a key: body %q → %s", body, rec.Body)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d without a JSON error: %q", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
	})
}

// FuzzForwardAuth sends arbitrary forward-auth requests (a style, a method, a URI, a host, a
// key or none, and any extra headers, hostile forwarding headers included) to the three
// endpoints. Whatever they hold, the answer is never a 500 and never an allow where Authorize,
// asked directly about the request the gateway forwards to the backend (for nginx: method
// X-Original-Method, URI X-Original-URI, Host, with the client's headers), denies.
func FuzzForwardAuth(f *testing.F) {
	for _, s := range []struct {
		style, key    uint8
		method, uri   string
		host, headers string
	}{
		{0, 1, "DELETE", "/api/engine/v2/systems/sys-1", "localhost", "X-Forwarded-Uri: /api/engine/v2/systems/sys-1\nX-Forwarded-Method: GET"},
		{0, 1, "GET", "/api/engine/v2/api_keys", "localhost", "X-Original-Host: b.test\nX-Forwarded-Host: b.test"},
		{0, 3, "GET", "/api/engine/v2/systems/sys-1", "localhost", "X-Forwarded-Host: b.test\nX-Original-Host: b.test"},
		{1, 1, "POST", "/api/engine/v2/users", "localhost", "X-Original-Uri: /api/engine/v2\nX-Original-Method: GET"},
		{2, 1, "HEAD", "/api/engine/v2/api_keys", "localhost", ""},
		{2, 1, "GET", "/../metrics", "localhost", ""},
		{0, 1, "GET", "/api/engine/v2/api_keys;x=1", "localhost", ""},
		{0, 1, "get", "/API/ENGINE/V2/API_KEYS", "LOCALHOST:80", ""},
		{0, 1, "OPTIONS", "/api/engine/v2/domains", "localhost", "Origin: https://evil.example"},
		{0, 1, "PROPFIND", "/api/engine/v2/api_keys", "localhost", ""},
		{0, 1, "GET", "/api/engine/v2/api_keys%00", "localhost", ""},
		{0, 1, "GET", "/api/engine/v2/x#/../../api_keys", "localhost", ""},
		{0, 1, "GET", "/api/engine/v2/%252e%252e/api_keys", "localhost", ""},
		{0, 1, "GET", "/api/engine/v2\uff0fapi_keys", "localhost", ""},
		{0, 1, "GET", "/api/engine/v2/%c0%afapi_keys", "localhost", ""},
		{0, 2, "GET", "/api/engine/v2/api_keys", "localhost", "X-Auth-User-Id: forged"},
		{1, 2, "DELETE", "/api/engine/v2/api_keys/x?api-key=y", "localhost@b.test", "Cookie: api-key=z"},
		{0, 0, "GET", "/api/engine/v2", "localhost", "Upgrade: websocket"},
	} {
		f.Add(s.style, s.key, s.method, s.uri, s.host, s.headers)
	}
	ctx := f.Context()
	store, err := badgerstore.OpenInMemory()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	domA := &keys.Domain{Name: "a", Domain: "localhost"}
	domB := &keys.Domain{Name: "b", Domain: "b.test"}
	for _, d := range []*keys.Domain{domA, domB} {
		if err := store.CreateDomain(ctx, d); err != nil {
			f.Fatal(err)
		}
	}
	userA := &keys.User{AuthorityID: domA.ID, Name: "user", Email: "user@localhost"}
	adminA := &keys.User{AuthorityID: domA.ID, Name: "admin", Email: "admin@localhost", SysAdmin: true}
	adminB := &keys.User{AuthorityID: domB.ID, Name: "admin-b", Email: "admin@b.test", SysAdmin: true}
	for _, u := range []*keys.User{userA, adminA, adminB} {
		if err := store.CreateUser(ctx, u); err != nil {
			f.Fatal(err)
		}
	}
	// keyOf[i] is the credential of choice i: none, a user-level public key, an admin key, and
	// an admin key of domain b.test.
	keyOf := []string{""}
	for _, k := range []*keys.APIKey{
		{Name: "public", UserID: userA.ID, Scopes: []string{"public"}},
		{Name: "admin", UserID: adminA.ID, Scopes: []string{"public"}, Permissions: keys.PermissionAdmin},
		{Name: "admin-b", UserID: adminB.ID, Scopes: []string{"public"}, Permissions: keys.PermissionAdmin},
	} {
		plain, err := store.CreateKey(ctx, k)
		if err != nil {
			f.Fatal(err)
		}
		keyOf = append(keyOf, string(plain))
	}
	b, err := opa.Builtin()
	if err != nil {
		f.Fatal(err)
	}
	engine, err := opa.New(ctx, b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	a := newAuthorizer(store, engine, nil, nil)
	srv := server.New(server.Deps{Store: store, Engine: engine, Authorizer: a})

	f.Fuzz(func(t *testing.T, style, key uint8, method, uri, host, headers string) {
		// What a gateway can send: a method token, a header-safe URI and host (a client's
		// request that breaks these never reaches keyauthz through a gateway).
		if !isToken(method) || !headerSafe(uri) || !headerSafe(host) || uri == "" || strings.ContainsAny(host, " \t") {
			return
		}
		client := http.Header{}
		for line := range strings.SplitSeq(headers, "\n") {
			name, value, ok := strings.Cut(line, ":")
			value = strings.TrimSpace(value)
			if !ok || !isToken(name) || !headerSafe(value) {
				continue
			}
			client.Add(name, value)
		}
		client.Del("Host")
		if k := keyOf[int(key)%len(keyOf)]; k != "" {
			client.Set("X-API-Key", k)
		}
		// The forward-auth request, as the gateway sends it.
		req := &http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Header: client.Clone(), Host: host,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		req = req.WithContext(t.Context())
		forwarded := authz.Request{Method: method, URI: uri, Host: host, Header: client}
		switch style % 3 {
		case 0:
			req.RequestURI = "/authz/nginx"
			req.Header.Set("X-Original-Method", method)
			req.Header.Set("X-Original-URI", uri)
			req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
		case 1:
			req.RequestURI = "/authz/traefik"
			req.Header.Set("X-Forwarded-Method", method)
			req.Header.Set("X-Forwarded-Uri", uri)
			req.Header.Set("X-Forwarded-Host", host)
		default:
			// Envoy appends the client's origin-form target; its method is the client's.
			if uri[0] != '/' || strings.ContainsAny(uri, " \t") {
				return
			}
			req.Method = method
			req.RequestURI = "/authz/envoy" + uri
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 || rec.Code != 200 && rec.Code != 401 && rec.Code != 403 {
			t.Fatalf("status %d for %s %q host %q headers %v: %s", rec.Code, method, uri, host, client, rec.Body)
		}
		if rec.Code != 200 {
			return
		}
		direct := a.Authorize(t.Context(), forwarded)
		if !direct.Decision.Allow {
			t.Fatalf("forward auth allowed %s %q host %q headers %v, which Authorize denies directly: %d %s",
				method, uri, host, client, direct.Decision.Status, direct.Decision.Message)
		}
		if got, want := rec.Header().Get("X-Auth-Key-Id"), keyIDOf(direct); got != want {
			t.Fatalf("identity %q, the direct decision's %q", got, want)
		}
	})
}

func keyIDOf(res authz.Result) string {
	if res.Key == nil {
		return ""
	}
	return res.Key.ID
}

// isToken reports whether s is an HTTP token (a method or a header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// headerSafe reports whether s can travel in a header value (no CR, LF or NUL).
func headerSafe(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00")
}

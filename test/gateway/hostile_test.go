package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// family is a gated route family: what the backend runs it with (a Go ServeMux pattern) and a
// canonical request for it.
type family struct {
	Pattern      string // ServeMux pattern of the gated handler
	Method, Path string // the canonical request
}

// Dir and Last split the canonical path at its last '/', for the spelling templates.
func (f family) Dir() string  { return f.Path[:strings.LastIndexByte(f.Path, '/')] }
func (f family) Last() string { return f.Path[strings.LastIndexByte(f.Path, '/')+1:] }

const v2 = "/api/engine/v2"

// gatedFamilies are routes of the table that need more than a user-level key with `public`: the
// admin or support gate (docs/policy-contract.md#the-default-table). The backend registers
// exactly these.
var gatedFamilies = []family{
	{"GET " + v2 + "/api_keys", "GET", v2 + "/api_keys"},
	{"POST " + v2 + "/api_keys", "POST", v2 + "/api_keys"},
	{"GET " + v2 + "/api_keys/{id}", "GET", v2 + "/api_keys/k-1"},
	{"DELETE " + v2 + "/api_keys/{id}", "DELETE", v2 + "/api_keys/k-1"},
	{"POST " + v2 + "/users", "POST", v2 + "/users"},
	{"DELETE " + v2 + "/users/{id}", "DELETE", v2 + "/users/u-1"},
	{"GET " + v2 + "/domains", "GET", v2 + "/domains"},
	{"POST " + v2 + "/domains", "POST", v2 + "/domains"},
	{"POST " + v2 + "/systems", "POST", v2 + "/systems"},
	{"DELETE " + v2 + "/systems/{id}", "DELETE", v2 + "/systems/sys-1"},
	{"GET " + v2 + "/systems/{id}/{module}", "GET", v2 + "/systems/sys-1/Display_1"},
	{"POST " + v2 + "/zones", "POST", v2 + "/zones"},
	{"DELETE " + v2 + "/zones/{id}", "DELETE", v2 + "/zones/z-1"},
	{"GET " + v2 + "/brokers", "GET", v2 + "/brokers"},
	{"PATCH " + v2 + "/brokers/{id}", "PATCH", v2 + "/brokers/b-1"},
	{"GET " + v2 + "/cluster", "GET", v2 + "/cluster"},
}

// ran is what the backend saw of one request.
type ran struct {
	Pattern, Method, URI, Host string
	KeyID, UserID, Permissions string
}

// gatedBackend is the API behind nginx: a net/http ServeMux with the gated handlers (and a
// catch-all that is not gated), recording which handler ran for each X-Test-Id.
type gatedBackend struct {
	URL string
	mu  sync.Mutex
	ran map[string]ran
}

func startGatedBackend(tb testing.TB) *gatedBackend {
	tb.Helper()
	b := &gatedBackend{ran: map[string]ran{}}
	mux := http.NewServeMux()
	record := func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.ran[r.Header.Get("X-Test-Id")] = ran{r.Pattern, r.Method, r.RequestURI, r.Host,
			r.Header.Get("X-Auth-Key-Id"), r.Header.Get("X-Auth-User-Id"), r.Header.Get("X-Auth-Permissions")}
		b.mu.Unlock()
		_, _ = io.WriteString(w, "ran "+r.Pattern)
	}
	for _, f := range gatedFamilies {
		mux.HandleFunc(f.Pattern, record)
	}
	mux.HandleFunc("/", record)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	b.URL = "http://" + ln.Addr().String()
	return b
}

func (b *gatedBackend) lookup(id string) (ran, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.ran[id]
	return r, ok
}

// gated reports whether pattern is one of the gated handlers.
func gated(pattern string) bool {
	for _, f := range gatedFamilies {
		if f.Pattern == pattern {
			return true
		}
	}
	return false
}

// hostileStack is keyauthz, the gated backend and nginx configured from the docs, with three
// keys: a user-level `public` key and an admin key of domain localhost, an admin key of b.test.
type hostileStack struct {
	k                   *keyauthz
	backend             *gatedBackend
	nginx               string // host:port
	user, admin, adminB createdKey
	nextID              atomic.Int64
}

func startHostileStack(tb testing.TB) *hostileStack {
	tb.Helper()
	nginxBinary(tb)
	s := &hostileStack{k: startKeyauthz(tb), backend: startGatedBackend(tb)}
	s.nginx = strings.TrimPrefix(startNginx(tb, s.k.Addr, s.backend.URL), "http://")
	s.user = createKeyFor(tb, s.k, "localhost", "public-user", false, "user", []string{"public"})
	// An admin key like the one an operator makes (the bootstrap key is admin_support, the level
	// a forged X-Auth-Permissions claims, so it could not show a forgery).
	s.admin = createKeyFor(tb, s.k, "localhost", "admin-a", true, "admin", []string{"public"})
	var dom struct {
		ID string `json:"id"`
	}
	if st := call(tb, "POST", s.k.URL+v2+"/domains", s.k.AdminKey, map[string]any{"name": "b", "domain": "b.test"}, &dom); st != 201 {
		tb.Fatalf("create domain b.test: %d", st)
	}
	s.adminB = createKeyFor(tb, s.k, dom.ID, "admin-b", true, "admin", []string{"public"})
	return s
}

// createKeyFor creates a user in domain (an id, or "localhost" for the bootstrap domain) and a
// key for it.
func createKeyFor(tb testing.TB, k *keyauthz, domain, name string, sysAdmin bool, perm string, scopes []string) createdKey {
	tb.Helper()
	if domain == "localhost" {
		var domains []struct {
			ID     string `json:"id"`
			Domain string `json:"domain"`
		}
		call(tb, "GET", k.URL+v2+"/domains", k.AdminKey, nil, &domains)
		for _, d := range domains {
			if d.Domain == "localhost" {
				domain = d.ID
			}
		}
	}
	var user struct {
		ID string `json:"id"`
	}
	if st := call(tb, "POST", k.URL+v2+"/users", k.AdminKey, map[string]any{
		"authority_id": domain, "name": name, "email": name + "@example.test", "sys_admin": sysAdmin,
	}, &user); st != 201 {
		tb.Fatalf("create user %s: %d", name, st)
	}
	var key createdKey
	if st := call(tb, "POST", k.URL+v2+"/api_keys", k.AdminKey, map[string]any{
		"name": name, "user_id": user.ID, "permissions": perm, "scopes": scopes,
	}, &key); st != 201 || key.Key == "" {
		tb.Fatalf("create key %s: %d", name, st)
	}
	return key
}

// send writes one request to nginx as raw bytes (so that any spelling is sent as written), with
// an X-Test-Id to find it at the backend, and returns nginx's status and the id.
func (s *hostileStack) send(tb testing.TB, method, target string, header []string) (int, string) {
	tb.Helper()
	id := fmt.Sprint(s.nextID.Add(1))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	hasHost := false
	for _, h := range header {
		hasHost = hasHost || strings.HasPrefix(strings.ToLower(h), "host:")
		b.WriteString(h + "\r\n")
	}
	if !hasHost {
		b.WriteString("Host: localhost\r\n")
	}
	fmt.Fprintf(&b, "X-Test-Id: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", id)
	conn, err := net.Dial("tcp", s.nginx)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang is a failure, not a timing check
	if _, err := io.WriteString(conn, b.String()); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		tb.Fatalf("%s %q: no answer from nginx: %v", method, target, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, id
}

// direct is keyauthz's own decision, through the Data API, on the request nginx forwards to the
// backend: the client's method and request-target, and nginx's $host.
func (s *hostileStack) direct(tb testing.TB, method, uri, host, key string) (allow bool, status int) {
	tb.Helper()
	var out struct {
		Result struct {
			Allow  bool `json:"allow"`
			Status int  `json:"status"`
		} `json:"result"`
	}
	in := map[string]any{"method": method, "path": uri, "host": host, "headers": map[string]string{"x-api-key": key}}
	if st := call(tb, "POST", s.k.URL+"/v1/data/keyauthz/decision", "", map[string]any{"input": in}, &out); st != 200 {
		tb.Fatalf("data API: %d", st)
	}
	return out.Result.Allow, out.Result.Status
}

// hostileHeaderSets are what a client adds to be judged as another request or as someone else.
var hostileHeaderSets = map[string][]string{
	"none":                 nil,
	"X-Forwarded-Uri":      {"X-Forwarded-Uri: " + v2, "X-Forwarded-Method: GET"},
	"X-Forwarded-Method":   {"X-Forwarded-Method: GET"},
	"X-Original-URI":       {"X-Original-URI: " + v2, "X-Original-Method: GET"},
	"X-Original-URI twice": {"X-Original-URI: " + v2, "X-Original-URI: " + v2, "X-Original-Method: GET", "X-Original-Method: GET"},
	"forwarded hosts":      {"X-Forwarded-Host: b.test", "X-Original-Host: b.test", "X-Host: b.test", "Forwarded: host=b.test"},
	"X-Forwarded-Prefix":   {"X-Forwarded-Prefix: " + v2, "X-Forwarded-Proto: https", "X-Envoy-Original-Path: " + v2},
	"X-Auth spoofing":      {"X-Auth-User-Id: forged", "X-Auth-Key-Id: forged", "X-Auth-Permissions: admin_support", "X-Auth-Scopes: public", "X-Auth-Authority-Id: forged"},
	"all": {"X-Forwarded-Uri: " + v2, "X-Forwarded-Method: GET", "X-Original-URI: " + v2, "X-Original-Method: GET",
		"X-Forwarded-Host: b.test", "X-Original-Host: b.test", "X-Forwarded-Prefix: " + v2, "X-Auth-Permissions: admin"},
}

// hostVariants are ways of naming the host, with the $host nginx makes of each (what keyauthz
// and the backend both see). "absolute" sends the target in absolute form, whose host wins.
var hostVariants = []struct{ name, header, absolute, host string }{
	{"localhost", "Host: localhost", "", "localhost"},
	{"upper case", "Host: LOCALHOST", "", "localhost"},
	{"with port", "Host: localhost:80", "", "localhost"},
	{"trailing dot", "Host: localhost.", "", "localhost"},
	{"other domain", "Host: b.test", "", "b.test"},
	{"absolute form to b.test", "Host: localhost", "http://b.test", "b.test"},
}

// TestHostileHeadersThroughNginx: a real nginx, configured from docs/gateways.md, in front of a
// ServeMux that stands in for the API. Whatever forwarding, identity or Host headers a client
// adds, on every gated route family, nginx allows exactly what keyauthz decides on the request
// nginx forwards to the backend: a user-level key never runs a gated handler, a domain-B key
// never passes on domain A's host, and the backend's identity headers are keyauthz's.
func TestHostileHeadersThroughNginx(t *testing.T) {
	s := startHostileStack(t)
	type caller struct {
		name string
		key  createdKey
	}
	callers := []caller{{"user public", s.user}, {"admin", s.admin}, {"admin of b.test", s.adminB}}
	for _, c := range callers {
		for setName, set := range hostileHeaderSets {
			for _, hv := range hostVariants {
				t.Run(c.name+"/"+setName+"/"+hv.name, func(t *testing.T) {
					for _, f := range gatedFamilies {
						header := append([]string{hv.header, "X-API-Key: " + c.key.Key}, set...)
						status, id := s.send(t, f.Method, hv.absolute+f.Path, header)
						got, reached := s.backend.lookup(id)
						allow, want := s.direct(t, f.Method, f.Path, hv.host, c.key.Key)
						switch {
						case reached && !allow:
							t.Errorf("%s %s: keyauthz denies it (%d) on the request the backend got, yet %s ran", f.Method, f.Path, want, got.Pattern)
						case !reached && allow:
							t.Errorf("%s %s: keyauthz allows it, yet nginx answered %d", f.Method, f.Path, status)
						case !reached && status != want:
							t.Errorf("%s %s: nginx %d, keyauthz %d", f.Method, f.Path, status, want)
						}
						if reached {
							if got.Host != hv.host || got.Method != f.Method || got.URI != f.Path {
								t.Errorf("backend got %s %s host %s, keyauthz judged %s %s host %s", got.Method, got.URI, got.Host, f.Method, f.Path, hv.host)
							}
							if got.KeyID != c.key.ID || got.UserID == "forged" || got.Permissions == "admin_support" {
								t.Errorf("backend identity %+v, want key %s", got, c.key.ID)
							}
						}
						if reached && gated(got.Pattern) && c.key == s.user {
							t.Errorf("a user-level key ran the gated handler %s", got.Pattern)
						}
						if reached && c.key == s.adminB && hv.host == "localhost" {
							t.Errorf("a b.test key passed on localhost: %s ran", got.Pattern)
						}
					}
				})
			}
		}
	}
	t.Run("controls", func(t *testing.T) {
		// The admin key runs a gated handler on its own host, and b.test's on b.test: the
		// denials above are the gates, not a broken stack.
		for _, c := range []struct {
			key  createdKey
			host string
		}{{s.admin, "localhost"}, {s.adminB, "b.test"}} {
			status, id := s.send(t, "GET", v2+"/api_keys", []string{"Host: " + c.host, "X-API-Key: " + c.key.Key})
			if got, ok := s.backend.lookup(id); status != 200 || !ok || got.Pattern != gatedFamilies[0].Pattern {
				t.Errorf("key %s on %s: %d, backend %+v", c.key.ID, c.host, status, got)
			}
		}
	})
}

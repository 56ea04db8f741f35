package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/keyauthz/keyauthz/internal/testutil"
)

// End-to-end tests of the admin API and of key presentation, driven over loopback HTTP as a
// client of the bootstrap domain "localhost" would drive them, against a real Badger folder.

// call is one HTTP request as a client sends it. Host defaults to "localhost" (the bootstrap
// domain): the server listens on 127.0.0.1, and a request for host 127.0.0.1 has no domain.
type call struct {
	method, path string
	body         any               // nil, string, []byte, or a value sent as JSON
	key          string            // X-API-Key header when not ""
	header       map[string]string // extra headers, names sent exactly as given
	cookie       *string           // api-key cookie when not nil
	host         string            // Host header; "" means "localhost"
}

type reply struct {
	status int
	body   []byte
	header http.Header
}

// send performs c against ts. It never calls t.Fatal, so goroutines may use it.
func (ts *testServer) send(ctx context.Context, c call) (reply, error) {
	rd, err := testutil.Body(c.body)
	if err != nil {
		return reply{}, err
	}
	req, err := http.NewRequestWithContext(ctx, c.method, ts.URL+c.path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Host = "localhost"
	if c.host != "" {
		req.Host = c.host
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("X-API-Key", c.key)
	}
	for name, v := range c.header {
		req.Header[name] = []string{v}
	}
	if c.cookie != nil {
		req.AddCookie(&http.Cookie{Name: "api-key", Value: *c.cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", c.method, c.path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{resp.StatusCode, out, resp.Header}, nil
}

// must performs c and fails the test on a transport error.
func (ts *testServer) must(t *testing.T, c call) reply {
	t.Helper()
	r, err := ts.send(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// admin performs a request as the bootstrap admin key and checks its status.
func (ts *testServer) admin(t *testing.T, method, path string, body any, want int) reply {
	t.Helper()
	r := ts.must(t, call{method: method, path: path, body: body, key: ts.AdminKey})
	if r.status != want {
		t.Fatalf("%s %s as admin: status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	return r
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// errorBody is the JSON body of every 4xx: {"error": ...}, with failures for a 422.
type errorBody struct {
	Error    string          `json:"error"`
	Failures []failureRecord `json:"failures,omitempty"`
}

type failureRecord struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// keyRecord is a key as the admin API shows it.
type keyRecord struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Description  string   `json:"description"`
	Scopes       []string `json:"scopes"`
	Permissions  string   `json:"permissions"`
	UserID       string   `json:"user_id"`
	AuthorityID  string   `json:"authority_id"`
	CreatedAt    int64    `json:"created_at"`
	UpdatedAt    int64    `json:"updated_at"`
	ExpiresAt    *int64   `json:"expires_at"`
	LastUsedAt   *int64   `json:"last_used_at"`
	AllowedCIDRs []string `json:"allowed_cidrs"`
	XAPIKey      *string  `json:"x_api_key"`
}

// world is a started server with the bootstrap domain's id and the ids it needs.
type world struct {
	*testServer
	domainID string
}

// newWorld starts a server on dataDir ("" for a new folder) and looks up the bootstrap domain.
func newWorld(t *testing.T, dataDir string) *world {
	t.Helper()
	// A generous evaluation budget: under -race on a loaded 2-core machine one evaluation can
	// exceed the 250 ms default, which is (correctly) a deny, and not what these tests test.
	ts := startServer(t, dataDir, "--eval-timeout", "10s")
	if ts.AdminKey == "" {
		t.Fatal("no bootstrap key in the data folder")
	}
	return attachWorld(t, ts)
}

func attachWorld(t *testing.T, ts *testServer) *world {
	t.Helper()
	t.Cleanup(func() { // on failure, show what the server logged at error level
		if !t.Failed() {
			return
		}
		for line := range strings.Lines(ts.Stderr.String()) {
			if strings.Contains(line, `"level":"ERROR"`) {
				t.Logf("server: %s", strings.TrimSpace(line))
			}
		}
	})
	r := ts.admin(t, "GET", "/api/engine/v2/domains", nil, http.StatusOK)
	for _, d := range decode[[]struct{ ID, Domain string }](t, r.body) {
		if d.Domain == "localhost" {
			return &world{testServer: ts, domainID: d.ID}
		}
	}
	t.Fatalf("no localhost domain in %s", r.body)
	return nil
}

// createUser creates a user in the localhost domain and returns its id.
func (w *world) createUser(t *testing.T, name string, sysAdmin bool) string {
	t.Helper()
	r := w.admin(t, "POST", "/api/engine/v2/users", map[string]any{
		"authority_id": w.domainID, "name": name, "email": strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com",
		"sys_admin": sysAdmin,
	}, http.StatusCreated)
	return decode[struct{ ID string }](t, r.body).ID
}

// createKey creates a key (body as the API takes it) and returns the 201's record, whose
// XAPIKey is the plaintext.
func (w *world) createKey(t *testing.T, body map[string]any) keyRecord {
	t.Helper()
	r := w.admin(t, "POST", "/api/engine/v2/api_keys", body, http.StatusCreated)
	k := decode[keyRecord](t, r.body)
	if k.XAPIKey == nil || *k.XAPIKey == "" {
		t.Fatalf("create: x_api_key missing in %s", r.body)
	}
	return k
}

// bookingPanel is the body of the booking panel key of the seed page, for user userID.
func bookingPanel(userID, name string) map[string]any {
	return map[string]any{
		"name": name, "description": "meeting room booking panel", "user_id": userID,
		"scopes":      []string{"users.read", "systems.read", "control", "zones.read", "metadata.read"},
		"permissions": "user",
	}
}

// listKeys returns every stored key, as the admin sees them.
func (w *world) listKeys(t *testing.T) []keyRecord {
	t.Helper()
	r := w.admin(t, "GET", "/api/engine/v2/api_keys?limit=10000", nil, http.StatusOK)
	return decode[[]keyRecord](t, r.body)
}

// decisionResult is the part of POST /v1/data/keyauthz/decision's result the tests check.
type decisionResult struct {
	Allow   bool   `json:"allow"`
	Status  int    `json:"status"`
	Message string `json:"message"`
	KeyID   string `json:"key_id"`
}

// decide asks the Data API decision endpoint about a request to host localhost with key.
func (ts *testServer) decide(t *testing.T, method, path, key string) decisionResult {
	t.Helper()
	input := map[string]any{"method": method, "path": path, "host": "localhost", "headers": map[string]string{}}
	if key != "" {
		input["headers"] = map[string]string{"x-api-key": key}
	}
	r := ts.must(t, call{method: "POST", path: "/v1/data/keyauthz/decision", body: map[string]any{"input": input}})
	if r.status != http.StatusOK {
		t.Fatalf("decision endpoint: status %d, body %s", r.status, r.body)
	}
	return decode[struct {
		Result decisionResult `json:"result"`
	}](t, r.body).Result
}

// TestKeyLifecycle creates the booking panel key as the bootstrap admin, uses it where its
// scopes allow and where they do not, deletes it, and checks it is refused at once.
func TestKeyLifecycle(t *testing.T) {
	w := newWorld(t, "")
	// The bootstrap domain is localhost: creating it again, in any spelling, is refused.
	r := w.admin(t, "POST", "/api/engine/v2/domains", map[string]any{"name": "again", "domain": "http://LOCALHOST:8080/"}, http.StatusUnprocessableEntity)
	if diff := cmp.Diff(errorBody{"validation failed", []failureRecord{{"domain", "has already been taken"}}}, decode[errorBody](t, r.body)); diff != "" {
		t.Errorf("domain localhost again (-want +got):\n%s", diff)
	}
	userID := w.createUser(t, "Room 1 Panel", false)

	before := time.Now().Unix()
	created := w.createKey(t, bookingPanel(userID, "Booking panel room 1"))
	plaintext := *created.XAPIKey
	id, _, _ := strings.Cut(plaintext, ".")
	wantKey := keyRecord{
		ID: id, Name: "Booking panel room 1", Description: "meeting room booking panel",
		Scopes:      []string{"users.read", "systems.read", "control", "zones.read", "metadata.read"},
		Permissions: "user", UserID: userID, AuthorityID: w.domainID,
		CreatedAt: created.CreatedAt, UpdatedAt: created.UpdatedAt, AllowedCIDRs: []string{},
	}
	if created.CreatedAt < before || created.CreatedAt > time.Now().Unix() {
		t.Errorf("created_at %d not within the test's run", created.CreatedAt)
	}
	got := created
	got.XAPIKey = nil
	if diff := cmp.Diff(wantKey, got); diff != "" {
		t.Errorf("created key (-want +got):\n%s", diff)
	}

	// The plaintext is shown once: x_api_key is present and null everywhere else.
	for _, c := range []struct {
		name, method, path string
		body               any
	}{
		{"show", "GET", "/api/engine/v2/api_keys/" + id, nil},
		{"list", "GET", "/api/engine/v2/api_keys", nil},
		{"update", "PATCH", "/api/engine/v2/api_keys/" + id, map[string]any{"description": "meeting room booking panel"}},
		{"put", "PUT", "/api/engine/v2/api_keys/" + id, map[string]any{"description": "meeting room booking panel"}},
	} {
		r := w.admin(t, c.method, c.path, c.body, http.StatusOK)
		if bytes.Contains(r.body, []byte(plaintext)) || bytes.Contains(r.body, []byte(strings.SplitN(plaintext, ".", 2)[1])) {
			t.Errorf("%s: the response contains the key's secret: %s", c.name, r.body)
		}
		var records []map[string]json.RawMessage
		if c.name == "list" {
			records = decode[[]map[string]json.RawMessage](t, r.body)
		} else {
			records = []map[string]json.RawMessage{decode[map[string]json.RawMessage](t, r.body)}
		}
		for _, rec := range records {
			if v, ok := rec["x_api_key"]; !ok || string(v) != "null" {
				t.Errorf("%s: x_api_key = %s (present %v), want null", c.name, v, ok)
			}
		}
	}

	// Real admin API routes: users.read opens GET /users; api_keys is not among its scopes.
	for _, c := range []struct {
		method, path string
		want         int
		wantErr      string
	}{
		{"GET", "/api/engine/v2/users", http.StatusOK, ""},
		{"GET", "/api/engine/v2/users/" + userID, http.StatusOK, ""},
		{"GET", "/api/engine/v2/api_keys/inspect", http.StatusOK, ""},
		{"GET", "/api/engine/v2/api_keys", http.StatusForbidden, ""},
		{"GET", "/api/engine/v2/api_keys/" + id, http.StatusForbidden, ""},
		{"POST", "/api/engine/v2/users", http.StatusForbidden, ""},
		{"GET", "/api/engine/v2/domains", http.StatusForbidden, ""},
	} {
		r := w.must(t, call{method: c.method, path: c.path, key: plaintext})
		if r.status != c.want {
			t.Errorf("%s %s with the panel key: status %d, want %d; body %s", c.method, c.path, r.status, c.want, r.body)
		}
		if c.want >= 400 && decode[errorBody](t, r.body).Error == "" {
			t.Errorf("%s %s: deny without an error message: %s", c.method, c.path, r.body)
		}
	}

	// Routes keyauthz does not serve itself, judged by the decision endpoint.
	decisions := []struct {
		method, path string
		want         decisionResult
	}{
		{"GET", "/api/engine/v2/systems", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/systems/sys-1", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/systems/sys-1/types", decisionResult{Allow: true, Status: 200}},
		{"POST", "/api/engine/v2/systems/sys-1/Bookings_1/book", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/zones?tags=level", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/metadata/zone-1", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/users", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/api_keys", decisionResult{Status: 403}},
		{"POST", "/api/engine/v2/zones", decisionResult{Status: 403}},
		{"PUT", "/api/engine/v2/metadata/zone-1", decisionResult{Status: 403}},
		{"DELETE", "/api/engine/v2/systems/sys-1", decisionResult{Status: 403}},
		{"GET", "/api/engine/v2/drivers", decisionResult{Status: 403}},
	}
	for _, d := range decisions {
		got := w.decide(t, d.method, d.path, plaintext)
		if got.KeyID != id {
			t.Errorf("decision %s %s: key_id %q, want %q", d.method, d.path, got.KeyID, id)
		}
		got.Message, got.KeyID = "", ""
		if diff := cmp.Diff(d.want, got); diff != "" {
			t.Errorf("decision %s %s (-want +got):\n%s", d.method, d.path, diff)
		}
	}

	// Delete: 202, and the very next request with the key is refused.
	if r := w.admin(t, "DELETE", "/api/engine/v2/api_keys/"+id, nil, http.StatusAccepted); len(bytes.TrimSpace(r.body)) != 0 {
		t.Errorf("delete: body %q, want none", r.body)
	}
	r = w.must(t, call{method: "GET", path: "/api/engine/v2/users", key: plaintext})
	if diff := cmp.Diff(reply401(msgUnknown), errReply(t, r)); diff != "" {
		t.Errorf("GET /users after delete (-want +got):\n%s", diff)
	}
	if got := w.decide(t, "GET", "/api/engine/v2/systems", plaintext); got.Allow || got.Status != 401 || got.Message != msgUnknown {
		t.Errorf("decision after delete: %+v, want a 401 %q", got, msgUnknown)
	}
	w.admin(t, "GET", "/api/engine/v2/api_keys/"+id, nil, http.StatusNotFound)
}

// Messages of the 401s, as docs/http-api.md#authentication-errors and
// docs/policy-contract.md#messages word them.
const (
	msgUnknown   = "unknown X-API-Key"
	msgExpired   = "API key has expired"
	msgNoDomain  = "authority not found"
	msgNoKey     = "missing credentials"
	inspectRoute = "/api/engine/v2/api_keys/inspect"
)

type statusError struct {
	Status int
	Error  string
}

func reply401(msg string) statusError { return statusError{401, msg} }

func errReply(t *testing.T, r reply) statusError {
	t.Helper()
	return statusError{r.status, decode[errorBody](t, r.body).Error}
}

// TestKeyPresentation checks where a key may come from (header, api-key parameter, api-key
// cookie), their precedence, and the 401s of expired, malformed and unknown keys and of an
// unknown host.
func TestKeyPresentation(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Presenter", false)

	// The expired key first, so that its two seconds run while the rest is set up.
	expiresAt := time.Now().Unix() + 2
	expBody := bookingPanel(userID, "expiring")
	expBody["expires_at"] = expiresAt
	expired := *w.createKey(t, expBody).XAPIKey
	if r := w.must(t, call{method: "GET", path: inspectRoute, key: expired}); r.status != http.StatusOK {
		t.Fatalf("key before its expiry: status %d %s", r.status, r.body)
	}

	a := w.createKey(t, bookingPanel(userID, "key A"))
	b := w.createKey(t, bookingPanel(userID, "key B"))
	keyA, keyB := *a.XAPIKey, *b.XAPIKey
	aID, aSecret, _ := strings.Cut(keyA, ".")
	unknown := "0123456789abcdef0123456789abcdef." + strings.Repeat("A", 43)
	wrongSecret := aID + "." + strings.Repeat("A", 42) + "g"
	if strings.HasSuffix(aSecret, "Ag") {
		wrongSecret = aID + "." + strings.Repeat("B", 43)
	}

	otherDomain := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/domains",
		map[string]any{"name": "Other", "domain": "other.example"}, http.StatusCreated).body).ID
	otherUser := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/users",
		map[string]any{"authority_id": otherDomain, "name": "Other", "email": "o@other.example"}, http.StatusCreated).body).ID
	foreign := w.createKey(t, bookingPanel(otherUser, "foreign"))

	time.Sleep(time.Until(time.Unix(expiresAt, 0)) + 20*time.Millisecond) // expired: expires_at <= now

	ptr := func(s string) *string { return &s }
	withParam := func(k string) string { return inspectRoute + "?api-key=" + url.QueryEscape(k) }
	cases := []struct {
		name   string
		c      call
		wantID string // the key id the server saw, for a 200
		want   statusError
	}{
		{"header", call{path: inspectRoute, key: keyA}, a.ID, statusError{Status: 200}},
		{"header name in any case", call{path: inspectRoute, header: map[string]string{"x-API-key": keyA}}, a.ID, statusError{Status: 200}},
		{"parameter", call{path: withParam(keyA)}, a.ID, statusError{Status: 200}},
		{"cookie", call{path: inspectRoute, cookie: ptr(keyA)}, a.ID, statusError{Status: 200}},
		{"host with port and upper case", call{path: inspectRoute, key: keyA, host: "LocalHost:8080"}, a.ID, statusError{Status: 200}},
		{"header before parameter", call{path: withParam(keyB), key: keyA}, a.ID, statusError{Status: 200}},
		{"header before cookie", call{path: inspectRoute, key: keyA, cookie: ptr(keyB)}, a.ID, statusError{Status: 200}},
		{"parameter before cookie", call{path: withParam(keyA), cookie: ptr(keyB)}, a.ID, statusError{Status: 200}},
		{"good header, bad cookie", call{path: inspectRoute, key: keyA, cookie: ptr("garbage")}, a.ID, statusError{Status: 200}},
		{"good header, bad parameter", call{path: withParam("garbage"), key: keyA}, a.ID, statusError{Status: 200}},
		{"good parameter, bad cookie", call{path: withParam(keyA), cookie: ptr("garbage")}, a.ID, statusError{Status: 200}},
		{"bad header, good parameter", call{path: withParam(keyA), key: "garbage"}, "", reply401(msgUnknown)},
		{"bad header, good cookie", call{path: inspectRoute, key: "garbage", cookie: ptr(keyA)}, "", reply401(msgUnknown)},
		{"bad parameter, good cookie", call{path: withParam("garbage"), cookie: ptr(keyA)}, "", reply401(msgUnknown)},
		{"empty header, good cookie", call{path: inspectRoute, header: map[string]string{"X-Api-Key": ""}, cookie: ptr(keyA)}, "", reply401(msgUnknown)},
		{"empty parameter, good cookie", call{path: withParam(""), cookie: ptr(keyA)}, "", reply401(msgUnknown)},
		{"malformed", call{path: inspectRoute, key: "not-a-key"}, "", reply401(msgUnknown)},
		{"secret with a trailing NUL", call{path: withParam(keyA + "\x00")}, "", reply401(msgUnknown)},
		{"upper-case id", call{path: inspectRoute, key: strings.ToUpper(aID) + "." + aSecret}, "", reply401(msgUnknown)},
		{"unknown well-formed", call{path: inspectRoute, key: unknown}, "", reply401(msgUnknown)},
		{"wrong secret", call{path: inspectRoute, key: wrongSecret}, "", reply401(msgUnknown)},
		{"expired in header", call{path: inspectRoute, key: expired}, "", reply401(msgExpired)},
		{"expired in parameter", call{path: withParam(expired)}, "", reply401(msgExpired)},
		{"expired in cookie", call{path: inspectRoute, cookie: ptr(expired)}, "", reply401(msgExpired)},
		{"expired header before good cookie", call{path: inspectRoute, key: expired, cookie: ptr(keyA)}, "", reply401(msgExpired)},
		{"no credential", call{path: inspectRoute}, "", reply401(msgNoKey)},
		{"unknown host", call{path: inspectRoute, key: keyA, host: "unknown.example"}, "", reply401(msgNoDomain)},
		{"key of another domain", call{path: inspectRoute, key: *foreign.XAPIKey}, "", reply401("authority domain does not match token's")},
		{"key of another domain on its own host", call{path: inspectRoute, key: *foreign.XAPIKey, host: "other.example"}, foreign.ID, statusError{Status: 200}},
		{"loopback address as host", call{path: inspectRoute, key: keyA, host: "127.0.0.1"}, "", reply401(msgNoDomain)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.method = "GET"
			r := w.must(t, tc.c)
			got := statusError{Status: r.status}
			if r.status != http.StatusOK {
				got = errReply(t, r)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s\nbody %s", diff, r.body)
			}
			if tc.wantID != "" {
				if id := decode[struct{ ID string }](t, r.body).ID; id != tc.wantID {
					t.Errorf("the server used key %s, want %s", id, tc.wantID)
				}
			}
			for _, secret := range []string{keyA, keyB, expired} {
				if bytes.Contains(r.body, []byte(secret)) {
					t.Errorf("the response echoes a key: %s", r.body)
				}
			}
		})
	}
	for _, secret := range []string{keyA, keyB, expired} {
		if strings.Contains(w.Stderr.String(), secret) || strings.Contains(w.Stdout.String(), secret) {
			t.Errorf("a key appears in the server's output")
		}
	}
}

// TestDemotedUserNarrowsItsKeys: an admin key of a sys_admin user lists keys until the user is
// demoted; from the next request on it is refused.
func TestDemotedUserNarrowsItsKeys(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Ops Admin", true)
	opsKey := *w.createKey(t, map[string]any{
		"name": "ops automation", "user_id": userID, "scopes": []string{"api_keys"}, "permissions": "admin",
	}).XAPIKey

	if r := w.must(t, call{method: "GET", path: "/api/engine/v2/api_keys", key: opsKey}); r.status != http.StatusOK {
		t.Fatalf("admin key of a sys_admin user: status %d %s, want 200", r.status, r.body)
	}
	r := w.admin(t, "PATCH", "/api/engine/v2/users/"+userID, map[string]any{"sys_admin": false}, http.StatusOK)
	if decode[struct {
		SysAdmin bool `json:"sys_admin"`
	}](t, r.body).SysAdmin {
		t.Fatalf("PATCH sys_admin=false answered %s", r.body)
	}
	if r := w.must(t, call{method: "GET", path: "/api/engine/v2/api_keys", key: opsKey}); r.status != http.StatusForbidden {
		t.Errorf("after the demotion: status %d %s, want 403", r.status, r.body)
	}
	insp := w.must(t, call{method: "GET", path: inspectRoute, key: opsKey})
	if p := decode[struct{ Permissions string }](t, insp.body).Permissions; p != "user" {
		t.Errorf("inspect after the demotion: permissions %q, want user (capped at the user's level)", p)
	}

	// Promoting again restores the key: the cap is computed per request.
	w.admin(t, "PATCH", "/api/engine/v2/users/"+userID, map[string]any{"sys_admin": true}, http.StatusOK)
	if r := w.must(t, call{method: "GET", path: "/api/engine/v2/api_keys", key: opsKey}); r.status != http.StatusOK {
		t.Errorf("after the promotion: status %d %s, want 200", r.status, r.body)
	}
}

// TestBadInputChangesNothing sends malformed and invalid requests to the admin API: each gets a
// clear 4xx JSON error, and the stored keys are exactly what they were.
func TestBadInputChangesNothing(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Panel User", false)
	existing := w.createKey(t, bookingPanel(userID, "Booking Panel"))
	keysPath := "/api/engine/v2/api_keys"
	oneKey := keysPath + "/" + existing.ID
	missingID := "0123456789abcdef0123456789abcdef"

	with := func(changes map[string]any) map[string]any {
		b := bookingPanel(userID, "new panel")
		for k, v := range changes {
			b[k] = v
		}
		return b
	}
	huge := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	cases := []struct {
		name         string
		method, path string
		body         any
		wantStatus   int
		wantErr      string // a substring of "error"
		wantFailures []failureRecord
	}{
		{"malformed JSON", "POST", keysPath, `{"name": "x", `, 400, "malformed JSON", nil},
		{"not an object", "POST", keysPath, `[1,2]`, 400, "malformed JSON", nil},
		{"scope with three parts", "POST", keysPath, with(map[string]any{"scopes": []string{"a.b.c"}}), 400, `invalid scope "a.b.c"`, nil},
		{"unknown scope suffix", "POST", keysPath, with(map[string]any{"scopes": []string{"systems.delete"}}), 400, `invalid scope "systems.delete"`, nil},
		{"upper-case resource", "POST", keysPath, with(map[string]any{"scopes": []string{"Systems"}}), 400, "invalid scope", nil},
		{"scopes as a string", "POST", keysPath, with(map[string]any{"scopes": "systems.read"}), 400, "malformed JSON", nil},
		{"name as a number", "POST", keysPath, with(map[string]any{"name": 42}), 400, "malformed JSON", nil},
		{"expires_at as a string", "POST", keysPath, with(map[string]any{"expires_at": "tomorrow"}), 400, "malformed JSON", nil},
		{"duplicate name, other case", "POST", keysPath, with(map[string]any{"name": "BOOKING panel"}), 422, "validation failed",
			[]failureRecord{{"name", "has already been taken"}}},
		{"duplicate name, padded", "POST", keysPath, with(map[string]any{"name": "  booking panel "}), 422, "validation failed",
			[]failureRecord{{"name", "has already been taken"}}},
		{"missing name", "POST", keysPath, with(map[string]any{"name": "  "}), 422, "validation failed",
			[]failureRecord{{"name", "is required"}}},
		{"unknown user", "POST", keysPath, with(map[string]any{"user_id": "user-doesnotexist00"}), 422, "validation failed",
			[]failureRecord{{"user_id", "does not exist"}}},
		{"permissions above the user's", "POST", keysPath, with(map[string]any{"permissions": "admin"}), 422, "validation failed",
			[]failureRecord{{"permissions", "exceeds the user's own level (user)"}}},
		{"unknown permissions", "POST", keysPath, with(map[string]any{"permissions": "root"}), 422, "validation failed",
			[]failureRecord{{"permissions", "is invalid (want user, support, admin or admin_support)"}}},
		{"expires_at in the past", "POST", keysPath, with(map[string]any{"expires_at": time.Now().Add(-time.Hour).Unix()}), 422, "validation failed",
			[]failureRecord{{"expires_at", "must be in the future"}}},
		{"expires_at now", "POST", keysPath, with(map[string]any{"expires_at": time.Now().Unix()}), 422, "validation failed",
			[]failureRecord{{"expires_at", "must be in the future"}}},
		{"name of 256 runes", "POST", keysPath, with(map[string]any{"name": strings.Repeat("é", 256)}), 422, "validation failed",
			[]failureRecord{{"name", "is too long (maximum is 255 characters)"}}},
		{"several failures at once", "POST", keysPath, with(map[string]any{"name": "", "permissions": "admin", "expires_at": 1}), 422, "validation failed",
			[]failureRecord{{"name", "is required"}, {"expires_at", "must be in the future"}, {"permissions", "exceeds the user's own level (user)"}}},
		{"2 MiB body", "POST", keysPath, huge, 413, "too large", nil},
		{"show unknown id", "GET", keysPath + "/" + missingID, nil, 404, "not found", nil},
		{"update unknown id", "PATCH", keysPath + "/" + missingID, map[string]any{"name": "x"}, 404, "not found", nil},
		{"put unknown id", "PUT", keysPath + "/" + missingID, map[string]any{"name": "x"}, 404, "not found", nil},
		{"delete unknown id", "DELETE", keysPath + "/" + missingID, nil, 404, "not found", nil},
		{"delete injection-shaped id", "DELETE", keysPath + "/..%2F..%2Fd%2F" + w.domainID, nil, 404, "not found", nil},
		{"update: malformed JSON", "PATCH", oneKey, `{"name":`, 400, "malformed JSON", nil},
		{"update: three-part scope", "PATCH", oneKey, map[string]any{"scopes": []string{"a.b.c"}}, 400, "invalid scope", nil},
		{"update: scopes as a string", "PATCH", oneKey, map[string]any{"scopes": "zones"}, 400, "malformed JSON", nil},
		{"update: expires_at in the past", "PATCH", oneKey, map[string]any{"expires_at": 1}, 422, "validation failed",
			[]failureRecord{{"expires_at", "must be in the future"}}},
		{"update: permissions above the user's", "PATCH", oneKey, map[string]any{"permissions": "support"}, 422, "validation failed",
			[]failureRecord{{"permissions", "exceeds the user's own level (user)"}}},
		{"update: name too long", "PATCH", oneKey, map[string]any{"name": strings.Repeat("n", 256)}, 422, "validation failed",
			[]failureRecord{{"name", "is too long (maximum is 255 characters)"}}},
		{"update: 2 MiB body", "PATCH", oneKey, huge, 413, "too large", nil},
	}

	before := w.listKeys(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := w.must(t, call{method: tc.method, path: tc.path, body: tc.body, key: w.AdminKey})
			if r.status != tc.wantStatus {
				t.Errorf("status %d, want %d; body %.300s", r.status, tc.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			got := decode[errorBody](t, r.body)
			if !strings.Contains(got.Error, tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", got.Error, tc.wantErr)
			}
			byField := cmpopts.SortSlices(func(a, b failureRecord) bool { return a.Field < b.Field })
			if diff := cmp.Diff(tc.wantFailures, got.Failures, byField, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("failures (-want +got):\n%s", diff)
			}
			if after := w.listKeys(t); !cmp.Equal(before, after) {
				t.Fatalf("the stored keys changed (-before +after):\n%s", cmp.Diff(before, after))
			}
		})
	}

	// Accepted edge cases: a unicode name round-trips, and 255 runes is the limit.
	for _, name := range []string{"Salle de réunion ☕ 会议室 🚪", strings.Repeat("é", 255)} {
		k := w.createKey(t, with(map[string]any{"name": name}))
		if k.Name != name {
			t.Errorf("created name %q, want %q", k.Name, name)
		}
		shown := decode[keyRecord](t, w.admin(t, "GET", keysPath+"/"+k.ID, nil, http.StatusOK).body)
		if shown.Name != name {
			t.Errorf("shown name %q, want %q", shown.Name, name)
		}
		if r := w.must(t, call{method: "GET", path: inspectRoute, key: *k.XAPIKey}); r.status != http.StatusOK ||
			decode[struct{ Name string }](t, r.body).Name != name {
			t.Errorf("inspect: %d %s", r.status, r.body)
		}
	}
}

// TestConcurrentCreateDelete runs 8 clients creating and deleting keys at once; afterwards the
// listing, its X-Total-Count and each key's show agree, and every surviving key authenticates.
func TestConcurrentCreateDelete(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Busy User", false)
	const clients, perClient = 8, 12

	var mu sync.Mutex
	survivors := map[string]string{} // id -> plaintext
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				r, err := w.send(t.Context(), call{method: "POST", path: "/api/engine/v2/api_keys", key: w.AdminKey,
					body: bookingPanel(userID, fmt.Sprintf("panel %d-%d", c, i))})
				if err != nil || r.status != http.StatusCreated {
					t.Errorf("client %d create %d: %v %d %s", c, i, err, r.status, r.body)
					return
				}
				var k keyRecord
				if err := json.Unmarshal(r.body, &k); err != nil || k.XAPIKey == nil {
					t.Errorf("client %d: create answered %s", c, r.body)
					return
				}
				if i%3 == 0 { // delete one in three, right away
					r, err := w.send(t.Context(), call{method: "DELETE", path: "/api/engine/v2/api_keys/" + k.ID, key: w.AdminKey})
					if err != nil || r.status != http.StatusAccepted {
						t.Errorf("client %d delete: %v %d %s", c, err, r.status, r.body)
					}
					r, err = w.send(t.Context(), call{method: "GET", path: inspectRoute, key: *k.XAPIKey})
					if err != nil || r.status != http.StatusUnauthorized {
						t.Errorf("client %d: deleted key answered %v %d %s", c, err, r.status, r.body)
					}
					continue
				}
				mu.Lock()
				survivors[k.ID] = *k.XAPIKey
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	r := w.admin(t, "GET", "/api/engine/v2/api_keys?limit=10000&authority_id="+w.domainID, nil, http.StatusOK)
	listed := decode[[]keyRecord](t, r.body)
	want := len(survivors) + 1 // the bootstrap key
	if got := r.header.Get("X-Total-Count"); got != fmt.Sprint(want) {
		t.Errorf("X-Total-Count %q, want %d", got, want)
	}
	if len(listed) != want {
		t.Errorf("listed %d keys, want %d", len(listed), want)
	}
	seen := map[string]bool{}
	for _, k := range listed {
		seen[k.ID] = true
		if k.Name == "bootstrap" {
			continue
		}
		if _, ok := survivors[k.ID]; !ok {
			t.Errorf("listed key %s (%s) was deleted or never created", k.ID, k.Name)
		}
		shown := decode[keyRecord](t, w.admin(t, "GET", "/api/engine/v2/api_keys/"+k.ID, nil, http.StatusOK).body)
		if diff := cmp.Diff(k, shown); diff != "" {
			t.Errorf("show %s differs from the listing (-list +show):\n%s", k.ID, diff)
		}
	}
	// 8 clients creating the same name (in different cases) at once: exactly one wins.
	statuses := make([]int, clients)
	for c := range clients {
		wg.Go(func() {
			name := "Contended Name"
			if c%2 == 1 {
				name = strings.ToUpper(name)
			}
			r, err := w.send(t.Context(), call{method: "POST", path: "/api/engine/v2/api_keys", key: w.AdminKey, body: bookingPanel(userID, name)})
			if err != nil {
				t.Error(err)
			}
			statuses[c] = r.status
		})
	}
	wg.Wait()
	slices.Sort(statuses)
	if diff := cmp.Diff([]int{201, 422, 422, 422, 422, 422, 422, 422}, statuses); diff != "" {
		t.Errorf("concurrent creates of one name (-want +got):\n%s", diff)
	}

	for id, plaintext := range survivors {
		if !seen[id] {
			t.Errorf("surviving key %s is not listed", id)
		}
		if r := w.must(t, call{method: "GET", path: inspectRoute, key: plaintext}); r.status != http.StatusOK {
			t.Errorf("surviving key %s: %d %s", id, r.status, r.body)
		}
	}
}

// TestListKeysPaging checks limit, offset, q and authority_id, and the X-Total-Count,
// Content-Range and Link headers, following rel="next" to the end.
func TestListKeysPaging(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Lister", false)
	for _, name := range []string{"Panel 3", "panel 1", "Kiosk", "Panel 2", "Signage"} {
		w.createKey(t, bookingPanel(userID, name))
	}
	other := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/domains",
		map[string]any{"name": "Other", "domain": "other.example"}, http.StatusCreated).body).ID
	otherUser := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/users",
		map[string]any{"authority_id": other, "name": "Elsewhere", "email": "e@other.example"}, http.StatusCreated).body).ID
	for _, name := range []string{"Other panel", "Other kiosk"} {
		w.createKey(t, bookingPanel(otherUser, name))
	}
	// All keys sorted by name, case-insensitively: bootstrap, Kiosk, Other kiosk, Other panel,
	// panel 1, Panel 2, Panel 3, Signage.
	const base = "/api/engine/v2/api_keys"
	type page struct {
		names        []string
		total        string
		contentRange string
		link         string
	}
	cases := []struct {
		query string
		want  page
	}{
		{"", page{[]string{"bootstrap", "Kiosk", "Other kiosk", "Other panel", "panel 1", "Panel 2", "Panel 3", "Signage"}, "8", "api_key 0-7/8", ""}},
		{"?limit=3", page{[]string{"bootstrap", "Kiosk", "Other kiosk"}, "8", "api_key 0-2/8", `<` + base + `?limit=3&offset=3>; rel="next"`}},
		{"?limit=3&offset=3", page{[]string{"Other panel", "panel 1", "Panel 2"}, "8", "api_key 3-5/8", `<` + base + `?limit=3&offset=6>; rel="next"`}},
		{"?limit=3&offset=6", page{[]string{"Panel 3", "Signage"}, "8", "api_key 6-7/8", ""}},
		{"?offset=8", page{[]string{}, "8", "api_key */8", ""}},
		{"?offset=100", page{[]string{}, "8", "api_key */8", ""}},
		{"?limit=0", page{[]string{}, "8", "api_key */8", ""}},
		{"?q=KIOSK", page{[]string{"Kiosk", "Other kiosk"}, "2", "api_key 0-1/2", ""}},
		{"?q=kiosk&limit=1", page{[]string{"Kiosk"}, "2", "api_key 0-0/2", `<` + base + `?limit=1&offset=1&q=kiosk>; rel="next"`}},
		{"?q=panel+3", page{[]string{"Panel 3"}, "1", "api_key 0-0/1", ""}},
		{"?q=Booking", page{[]string{"Kiosk", "Other kiosk", "Other panel", "panel 1", "Panel 2", "Panel 3", "Signage"}, "7", "api_key 0-6/7", ""}}, // the description
		{"?q=nothing-matches", page{[]string{}, "0", "api_key */0", ""}},
		{"?authority_id=" + other, page{[]string{"Other kiosk", "Other panel"}, "2", "api_key 0-1/2", ""}},
		{"?authority_id=" + other + "&q=kiosk", page{[]string{"Other kiosk"}, "1", "api_key 0-0/1", ""}},
		{"?authority_id=" + w.domainID + "&limit=5&offset=1", page{[]string{"Kiosk", "panel 1", "Panel 2", "Panel 3", "Signage"}, "6", "api_key 1-5/6", ""}},
		{"?authority_id=authority-nonexistent", page{[]string{}, "0", "api_key */0", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := w.admin(t, "GET", base+tc.query, nil, http.StatusOK)
			got := page{names: []string{}, total: r.header.Get("X-Total-Count"), contentRange: r.header.Get("Content-Range"), link: r.header.Get("Link")}
			for _, k := range decode[[]keyRecord](t, r.body) {
				got.names = append(got.names, k.Name)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(page{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("follow Link to the end", func(t *testing.T) {
		var names []string
		next, pages := base+"?limit=3", 0
		for next != "" && pages < 10 {
			r := w.admin(t, "GET", next, nil, http.StatusOK)
			for _, k := range decode[[]keyRecord](t, r.body) {
				names = append(names, k.Name)
			}
			next = ""
			if l := r.header.Get("Link"); l != "" {
				next = strings.TrimPrefix(strings.SplitN(l, ">", 2)[0], "<")
			}
			pages++
		}
		if diff := cmp.Diff(cases[0].want.names, names); diff != "" || pages != 3 {
			t.Errorf("pages %d, names (-want +got):\n%s", pages, diff)
		}
	})

	t.Run("Link never carries the api-key parameter", func(t *testing.T) {
		r := w.must(t, call{method: "GET", path: base + "?limit=2&api-key=" + url.QueryEscape(w.AdminKey)})
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		want := `<` + base + `?limit=2&offset=2>; rel="next"`
		if got := r.header.Get("Link"); got != want {
			t.Errorf("Link %q, want %q", got, want)
		}
	})

	for _, q := range []string{"?limit=-1", "?limit=ten", "?offset=-5"} {
		r := w.must(t, call{method: "GET", path: base + q, key: w.AdminKey})
		if r.status != http.StatusBadRequest || decode[errorBody](t, r.body).Error == "" {
			t.Errorf("GET %s: %d %s, want a 400 with an error", q, r.status, r.body)
		}
	}
}

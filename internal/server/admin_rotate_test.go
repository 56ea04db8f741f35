package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/server"
)

// Rotation through the admin API (docs/keys.md#rotation) on a real server over an on-disk
// Badger store, with one fake clock for the store and the credential path: the overlap is
// crossed by moving the clock, never by waiting.

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// rotateFixture is a server whose store and authorizer read clock, with an admin key
// (api_keys, public), a narrower admin key (api_keys, systems.read) and a panel key.
type rotateFixture struct {
	url               string
	clock             *fakeClock
	store             *badgerstore.Store
	panelUser, admin  *keys.User
	adminPT, narrowPT string
	panel             *keys.APIKey
	panelPT           string
	newKey            func(k *keys.APIKey) string
	sinceStart        func() time.Duration
}

func newRotateFixture(t *testing.T) *rotateFixture {
	t.Helper()
	ctx := t.Context()
	// Whole seconds, so that expires_at (Unix seconds) lands exactly on an overlap's end.
	clock := &fakeClock{now: time.Now().Truncate(time.Second)}
	start := clock.Now()
	store, eng := openStoreAndEngine(t, badgerstore.WithClock(clock.Now))
	f := &rotateFixture{clock: clock, store: store, sinceStart: func() time.Duration { return clock.Now().Sub(start) }}
	d := &keys.Domain{Name: "localhost", Domain: "localhost"}
	if err := store.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	f.panelUser = &keys.User{AuthorityID: d.ID, Name: "panel", Email: "panel@localhost"}
	f.admin = &keys.User{AuthorityID: d.ID, Name: "admin", Email: "admin@localhost", SysAdmin: true}
	for _, u := range []*keys.User{f.panelUser, f.admin} {
		if err := store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	f.newKey = func(k *keys.APIKey) string {
		t.Helper()
		pt, err := store.CreateKey(ctx, k)
		if err != nil {
			t.Fatalf("create key %s: %v", k.Name, err)
		}
		return string(pt)
	}
	f.adminPT = f.newKey(&keys.APIKey{Name: "admin", UserID: f.admin.ID, Scopes: []string{"api_keys", "public"}, Permissions: keys.PermissionAdmin})
	f.narrowPT = f.newKey(&keys.APIKey{Name: "narrow", UserID: f.admin.ID, Scopes: []string{"api_keys", "systems.read"}, Permissions: keys.PermissionAdmin})
	f.panel = &keys.APIKey{Name: "lobby panel", Description: "by the door", UserID: f.panelUser.ID, Scopes: []string{"systems.read"}}
	f.panelPT = f.newKey(f.panel)

	logger := slog.New(slog.DiscardHandler)
	srv := server.New(server.Deps{
		Logger: logger, Store: store, Engine: eng, Version: "test",
		Authorizer: newAuthorizer(store, eng, logger, clock.Now),
	})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	f.url = ts.URL
	return f
}

// rotateResponse is the part of a key response these tests read.
type rotateResponse struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Scopes      []string `json:"scopes"`
	Permissions string   `json:"permissions"`
	UserID      string   `json:"user_id"`
	ExpiresAt   *int64   `json:"expires_at"`
	RotatedFrom string   `json:"rotated_from"`
	ReplacedBy  string   `json:"replaced_by"`
	State       string   `json:"state"`
	XAPIKey     *string  `json:"x_api_key"`
	Error       string   `json:"error"`
	Failures    []keys.Failure
}

// call sends an admin request with caller's key; body is sent as is with contentType.
func (f *rotateFixture) call(t *testing.T, caller, method, path, contentType, body string) (int, rotateResponse, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost" // the keys' domain
	if caller != "" {
		req.Header.Set("X-API-Key", caller)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	status, out, _ := send(t, req)
	var r rotateResponse
	if len(out) > 0 && out[0] == '{' {
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
	return status, r, out
}

func (f *rotateFixture) rotate(t *testing.T, caller, id, body string) (int, rotateResponse, []byte) {
	t.Helper()
	return f.call(t, caller, "POST", "/api/engine/v2/api_keys/"+id+"/rotate", "application/json", body)
}

func (f *rotateFixture) show(t *testing.T, id string) rotateResponse {
	t.Helper()
	status, r, out := f.call(t, f.adminPT, "GET", "/api/engine/v2/api_keys/"+id, "", "")
	if status != http.StatusOK {
		t.Fatalf("GET key %s: %d %s", id, status, out)
	}
	return r
}

// decide asks the Data API whether key may GET /api/engine/v2/systems (the panel's scope),
// twice, so that the second answer may come from the caches, and returns the second.
func (f *rotateFixture) decide(t *testing.T, key string) (status int, message string) {
	t.Helper()
	in := map[string]any{"input": map[string]any{
		"method": "GET", "path": "/api/engine/v2/systems", "host": "localhost", "headers": map[string]string{"x-api-key": key},
	}}
	for range 2 {
		code, body, _ := send(t, newRequest(t, "POST", f.url+"/v1/data/keyauthz/decision", in))
		if code != http.StatusOK {
			t.Fatalf("decision endpoint: %d %s", code, body)
		}
		var out struct {
			Result struct {
				Allow   bool   `json:"allow"`
				Status  int    `json:"status"`
				Message string `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		if out.Result.Allow != (out.Result.Status == http.StatusOK) {
			t.Fatalf("decision allow %v with status %d", out.Result.Allow, out.Result.Status)
		}
		status, message = out.Result.Status, out.Result.Message
	}
	return status, message
}

// wantDecision fails t unless key is allowed (want 200) or refused with want and msg.
func (f *rotateFixture) wantDecision(t *testing.T, what, key string, want int, msg string) {
	t.Helper()
	status, message := f.decide(t, key)
	if status != want || (msg != "" && message != msg) {
		t.Errorf("%s at +%s: %d %q, want %d %q", what, f.sinceStart(), status, message, want, msg)
	}
}

// TestRotateOverlap: the old and the new key both work during the overlap, whatever the
// caches hold; at its end the old key is 401 "API key has expired" and the new one works on.
func TestRotateOverlap(t *testing.T) {
	f := newRotateFixture(t)
	f.wantDecision(t, "panel key before rotation", f.panelPT, http.StatusOK, "")

	status, r, out := f.rotate(t, f.adminPT, f.panel.ID, `{"overlap":"1h"}`)
	if status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", status, out)
	}
	if r.XAPIKey == nil || !strings.HasPrefix(*r.XAPIKey, r.ID+".") || r.ID == f.panel.ID {
		t.Fatalf("rotate answered key %s with x_api_key %v", r.ID, r.XAPIKey)
	}
	newPT := *r.XAPIKey
	if r.Name != f.panel.Name || r.Description != f.panel.Description || strings.Join(r.Scopes, ",") != "systems.read" ||
		r.Permissions != "user" || r.UserID != f.panelUser.ID || r.ExpiresAt != nil || r.RotatedFrom != f.panel.ID ||
		r.ReplacedBy != "" || r.State != keys.StateActive {
		t.Errorf("new key = %s", out)
	}
	old := f.show(t, f.panel.ID)
	end := f.clock.Now().Add(time.Hour).Unix()
	if old.ReplacedBy != r.ID || old.ExpiresAt == nil || *old.ExpiresAt != end || old.State != keys.StateRotating || old.XAPIKey != nil {
		t.Errorf("old key after rotation: replaced_by %q, expires_at %v, state %q; want %s, %d, rotating", old.ReplacedBy, old.ExpiresAt, old.State, r.ID, end)
	}
	if again := f.show(t, r.ID); again.XAPIKey != nil || again.State != keys.StateActive {
		t.Errorf("GET of the new key: x_api_key %v, state %q", again.XAPIKey, again.State)
	}

	for _, step := range []struct {
		advance    time.Duration
		oldStatus  int
		oldMessage string
		newStatus  int
		when       string
	}{
		{0, http.StatusOK, "", http.StatusOK, "at once"},
		{59*time.Minute + 59*time.Second, http.StatusOK, "", http.StatusOK, "one second before the end"},
		{time.Second, http.StatusUnauthorized, "API key has expired", http.StatusOK, "at the end"},
		{30 * 24 * time.Hour, http.StatusUnauthorized, "API key has expired", http.StatusOK, "a month on"},
	} {
		f.clock.Advance(step.advance)
		f.wantDecision(t, "old key "+step.when, f.panelPT, step.oldStatus, step.oldMessage)
		f.wantDecision(t, "new key "+step.when, newPT, step.newStatus, "")
	}
}

// TestRotateExpiringKey: a key that expires before the overlap would end keeps its own expiry,
// and the new key gets the same one: rotation never lengthens a key's life.
func TestRotateExpiringKey(t *testing.T) {
	f := newRotateFixture(t)
	exp := f.clock.Now().Add(10 * time.Minute).Unix()
	k := &keys.APIKey{Name: "temporary", UserID: f.panelUser.ID, Scopes: []string{"systems.read"}, ExpiresAt: &exp}
	pt := f.newKey(k)

	status, r, out := f.rotate(t, f.adminPT, k.ID, "") // no body: the default overlap, 24h
	if status != http.StatusCreated || r.XAPIKey == nil {
		t.Fatalf("rotate: %d %s", status, out)
	}
	if r.ExpiresAt == nil || *r.ExpiresAt != exp {
		t.Errorf("new key's expires_at = %v, want the old key's %d", r.ExpiresAt, exp)
	}
	if old := f.show(t, k.ID); old.ExpiresAt == nil || *old.ExpiresAt != exp {
		t.Errorf("old key's expires_at = %v, want its own %d, sooner than the overlap", old.ExpiresAt, exp)
	}
	f.wantDecision(t, "old key before its expiry", pt, http.StatusOK, "")
	f.wantDecision(t, "new key before its expiry", *r.XAPIKey, http.StatusOK, "")
	f.clock.Advance(10 * time.Minute)
	f.wantDecision(t, "old key at its expiry", pt, http.StatusUnauthorized, "API key has expired")
	f.wantDecision(t, "new key at the old key's expiry", *r.XAPIKey, http.StatusUnauthorized, "API key has expired")
}

// TestRotateDefaultOverlap: an empty body, {} and a null overlap all mean 24 hours.
func TestRotateDefaultOverlap(t *testing.T) {
	f := newRotateFixture(t)
	for i, body := range []string{"", "{}", `{"overlap":null}`, `{"overlap":""}`, " \n"} {
		k := &keys.APIKey{Name: fmt.Sprint("default ", i), UserID: f.panelUser.ID}
		f.newKey(k)
		status, _, out := f.rotate(t, f.adminPT, k.ID, body)
		if status != http.StatusCreated {
			t.Errorf("rotate with body %q: %d %s", body, status, out)
			continue
		}
		if old := f.show(t, k.ID); old.ExpiresAt == nil || *old.ExpiresAt != f.clock.Now().Add(keys.DefaultOverlap).Unix() {
			t.Errorf("body %q: old key's expires_at = %v, want now + 24h", body, old.ExpiresAt)
		}
	}
}

// TestRotateRefused: every refusal is a 4xx with a JSON error, and the store is left as it
// was: the minting cap, an unknown key, a second rotation, a bad overlap, a bad body, a caller
// without the api_keys scope.
func TestRotateRefused(t *testing.T) {
	f := newRotateFixture(t)
	zones := &keys.APIKey{Name: "zones", UserID: f.panelUser.ID, Scopes: []string{"zones"}}
	f.newKey(zones)
	replaced := &keys.APIKey{Name: "replaced", UserID: f.panelUser.ID}
	f.newKey(replaced)
	if status, _, out := f.rotate(t, f.adminPT, replaced.ID, `{"overlap":"1h"}`); status != http.StatusCreated {
		t.Fatalf("first rotation: %d %s", status, out)
	}
	path := func(id string) string { return "/api/engine/v2/api_keys/" + id + "/rotate" }

	for _, tt := range []struct {
		name           string
		caller         string
		path           string
		contentType    string
		body           string
		status         int
		error, failure string
	}{
		{"minting cap", f.narrowPT, path(zones.ID), "application/json", "", http.StatusForbidden, "cannot grant scope zones: the calling key does not hold it", ""},
		{"unknown key", f.adminPT, path("0123456789abcdef0123456789abcdef"), "application/json", "", http.StatusNotFound, `key "0123456789abcdef0123456789abcdef" not found`, ""},
		{"second rotation", f.adminPT, path(replaced.ID), "application/json", "", http.StatusConflict, "", ""},
		{"negative overlap", f.adminPT, path(f.panel.ID), "application/json", `{"overlap":"-1h"}`, http.StatusUnprocessableEntity, "validation failed", "overlap"},
		{"overlap over 30 days", f.adminPT, path(f.panel.ID), "application/json", `{"overlap":"721h"}`, http.StatusUnprocessableEntity, "validation failed", "overlap"},
		{"overlap not a duration", f.adminPT, path(f.panel.ID), "application/json", `{"overlap":"1 day"}`, http.StatusUnprocessableEntity, "validation failed", "overlap"},
		{"overlap a number", f.adminPT, path(f.panel.ID), "application/json", `{"overlap":3600}`, http.StatusBadRequest, "", ""},
		{"malformed JSON", f.adminPT, path(f.panel.ID), "application/json", `{"overlap":`, http.StatusBadRequest, "", ""},
		{"not JSON", f.adminPT, path(f.panel.ID), "text/plain", `{"overlap":"1h"}`, http.StatusUnsupportedMediaType, "Content-Type must be application/json", ""},
		{"no Content-Type", f.adminPT, path(f.panel.ID), "", "", http.StatusUnsupportedMediaType, "Content-Type must be application/json", ""},
		{"caller without api_keys", f.panelPT, path(f.panel.ID), "application/json", "", http.StatusForbidden, "", ""},
		{"no key", "", path(f.panel.ID), "application/json", "", http.StatusUnauthorized, "missing credentials", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := storeSnapshotOf(t, f.store)
			status, r, out := f.call(t, tt.caller, "POST", tt.path, tt.contentType, tt.body)
			if status != tt.status || r.Error == "" || (tt.error != "" && r.Error != tt.error) {
				t.Errorf("%d %s; want %d with error %q", status, out, tt.status, tt.error)
			}
			if tt.failure != "" && (len(r.Failures) != 1 || r.Failures[0].Field != tt.failure) {
				t.Errorf("failures %v, want one on %s", r.Failures, tt.failure)
			}
			if after := storeSnapshotOf(t, f.store); after != before {
				t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// storeSnapshotOf is every key as stored, for "nothing changed" checks.
func storeSnapshotOf(t *testing.T, s keys.Service) string {
	t.Helper()
	list, _, err := s.ListKeys(t.Context(), keys.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKeyStateInListing: the listing shows each key's state: the old key of a rotation is
// rotating during its overlap, a key whose overlap was 0 is expired, the others active.
func TestKeyStateInListing(t *testing.T) {
	f := newRotateFixture(t)
	gone := &keys.APIKey{Name: "gone", UserID: f.panelUser.ID}
	f.newKey(gone)
	if status, _, out := f.rotate(t, f.adminPT, f.panel.ID, `{"overlap":"24h"}`); status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", status, out)
	}
	if status, _, out := f.rotate(t, f.adminPT, gone.ID, `{"overlap":"0s"}`); status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", status, out)
	}
	status, _, out := f.call(t, f.adminPT, "GET", "/api/engine/v2/api_keys", "", "")
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, out)
	}
	var list []rotateResponse
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, k := range list {
		if k.XAPIKey != nil {
			t.Errorf("listing shows x_api_key of %s", k.ID)
		}
		got[k.ID] = k.State
	}
	want := map[string]string{f.panel.ID: keys.StateRotating, gone.ID: keys.StateExpired}
	for _, k := range list {
		if w, ok := want[k.ID]; ok && got[k.ID] != w || !ok && got[k.ID] != keys.StateActive {
			t.Errorf("key %s (%s): state %q", k.ID, k.Name, got[k.ID])
		}
	}
	if len(list) != 6 {
		t.Errorf("listing has %d keys, want 6 (admin, narrow, the 2 rotated and their 2 replacements)", len(list))
	}
}

// TestUpdateReplacedKey: a key replaced by rotation keeps its description and scopes editable,
// but cannot be renamed (its name is its replacement's) nor outlive its overlap (409).
func TestUpdateReplacedKey(t *testing.T) {
	f := newRotateFixture(t)
	if status, _, out := f.rotate(t, f.adminPT, f.panel.ID, `{"overlap":"1h"}`); status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", status, out)
	}
	later := f.clock.Now().Add(2 * time.Hour).Unix()
	sooner := f.clock.Now().Add(time.Minute).Unix()
	for _, tt := range []struct {
		name, body string
		status     int
	}{
		{"rename", `{"name":"elsewhere"}`, http.StatusConflict},
		{"never expire", `{"expires_at":null}`, http.StatusConflict},
		{"expire later", fmt.Sprintf(`{"expires_at":%d}`, later), http.StatusConflict},
		{"describe", `{"description":"retiring"}`, http.StatusOK},
		{"expire sooner", fmt.Sprintf(`{"expires_at":%d}`, sooner), http.StatusOK},
	} {
		before := storeSnapshotOf(t, f.store)
		status, r, out := f.call(t, f.adminPT, "PATCH", "/api/engine/v2/api_keys/"+f.panel.ID, "application/json", tt.body)
		if status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, out, tt.status)
		}
		if status == http.StatusConflict && (!strings.Contains(r.Error, "was replaced by key") || storeSnapshotOf(t, f.store) != before) {
			t.Errorf("%s: error %q, or the store changed", tt.name, r.Error)
		}
	}
}

package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/google/go-cmp/cmp"
	"github.com/keyauthz/keyauthz/internal/keys"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
)

// patchRouter serves the domain and user update handlers over s, every request made by caller.
func patchRouter(s keys.Service, caller *keys.Caller) http.Handler {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Request = c.Request.WithContext(keys.ContextWithCaller(c.Request.Context(), caller))
	})
	r.PATCH("/domains/:id", handleUpdateDomain(s))
	r.PATCH("/users/:id", handleUpdateUser(s))
	return r
}

// storedCaller creates a key of user u at level p (scopes public) and returns it as the
// caller the authorization middleware would put in a request: every write re-reads the
// caller's key and user, so they must be stored.
func storedCaller(t *testing.T, s keys.Service, u *keys.User, p keys.Permission) *keys.Caller {
	t.Helper()
	k := &keys.APIKey{Name: "caller " + string(p) + " " + u.ID, UserID: u.ID, Scopes: []string{"public"}, Permissions: p}
	if _, err := s.CreateKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	return &keys.Caller{Key: k, User: u, Permissions: p}
}

// patchFixture is one domain with a plain user (in group zone-1) and an admin user.
type patchFixture struct {
	domain      *keys.Domain
	user, admin *keys.User
}

// newPatchStore returns an empty Badger store in memory.
func newPatchStore(t *testing.T) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// seedSite creates the domain host with its two users.
func seedSite(t *testing.T, s keys.Service, host string) patchFixture {
	t.Helper()
	ctx := t.Context()
	f := patchFixture{
		domain: &keys.Domain{Name: "Site " + host, Domain: host},
		user:   &keys.User{Name: "Plain", Email: "plain@" + host, Groups: []string{"zone-1"}},
		admin:  &keys.User{Name: "Admin", Email: "admin@" + host, SysAdmin: true},
	}
	if err := s.CreateDomain(ctx, f.domain); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*keys.User{f.user, f.admin} {
		u.AuthorityID = f.domain.ID
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// storeSnapshot is everything stored, for "nothing changed" assertions.
func storeSnapshot(t *testing.T, s keys.Service) string {
	t.Helper()
	ks, _, err := s.ListKeys(t.Context(), keys.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	users, _ := s.ListUsers(t.Context(), "")
	domains, _ := s.ListDomains(t.Context())
	d, u, k := s.Counts(t.Context())
	b, err := json.MarshalIndent([]any{d, u, k, ks, users, domains}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func patch(t *testing.T, h http.Handler, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPatch, path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestConcurrentPatches: PATCHes of different fields of one domain or user, sent at once, all
// survive: each is applied in one transaction to the record it replaces, so none writes back a
// stale copy of a field another one changed.
func TestConcurrentPatches(t *testing.T) {
	s := newPatchStore(t)
	f := seedSite(t, s, "example.com")
	// An admin_support caller: the PATCHes below make the user admin_support at times, and
	// an admin may not change a user above its own level.
	boss := &keys.User{AuthorityID: f.domain.ID, Name: "Boss", Email: "boss@example.com", SysAdmin: true, Support: true}
	if err := s.CreateUser(t.Context(), boss); err != nil {
		t.Fatal(err)
	}
	h := patchRouter(s, storedCaller(t, s, boss, keys.PermissionAdminSupport))
	const rounds = 25

	// send PATCHes path with field set to value(i) for i in [0, rounds) from one goroutine per
	// field, all at once. A 409 (too many concurrent changes) is retried, as a client would.
	send := func(path string, fields map[string]func(i int) any) {
		race := make(chan struct{})
		done := make(chan struct{})
		for field, value := range fields {
			go func() {
				defer func() { done <- struct{}{} }()
				<-race
				for i := range rounds {
					for {
						w := patch(t, h, path, map[string]any{field: value(i)})
						if w.Code == http.StatusConflict {
							continue
						}
						if w.Code != http.StatusOK {
							t.Errorf("PATCH %s %s=%v: %d %s", path, field, value(i), w.Code, w.Body)
							return
						}
						break
					}
				}
			}()
		}
		close(race)
		for range fields {
			<-done
		}
	}

	last := rounds - 1
	send("/domains/"+f.domain.ID, map[string]func(int) any{
		"name":        func(i int) any { return fmt.Sprint("name ", i) },
		"description": func(i int) any { return fmt.Sprint("description ", i) },
		"domain":      func(i int) any { return fmt.Sprintf("h%d.example.com", i) },
	})
	d, err := s.GetDomain(t.Context(), f.domain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := [3]string{d.Name, d.Description, d.Domain}, [3]string{fmt.Sprint("name ", last), fmt.Sprint("description ", last), fmt.Sprintf("h%d.example.com", last)}; got != want {
		t.Errorf("domain after concurrent PATCHes = %q, want every field's last write %q", got, want)
	}

	send("/users/"+f.user.ID, map[string]func(int) any{
		"name":      func(i int) any { return fmt.Sprint("name ", i) },
		"email":     func(i int) any { return fmt.Sprintf("u%d@example.com", i) },
		"sys_admin": func(i int) any { return i%2 == 0 },
		"support":   func(i int) any { return i%2 == 1 },
		"groups":    func(i int) any { return []string{fmt.Sprint("g", i)} },
	})
	u, err := s.GetUser(t.Context(), f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *f.user
	want.Name, want.Email, want.SysAdmin, want.Support = fmt.Sprint("name ", last), fmt.Sprintf("u%d@example.com", last), last%2 == 0, last%2 == 1
	want.Groups, want.UpdatedAt = []string{fmt.Sprint("g", last)}, u.UpdatedAt
	if diff := cmp.Diff(&want, u); diff != "" {
		t.Errorf("user after concurrent PATCHes (-every field's last write +stored):\n%s", diff)
	}
}

// TestPatchUserAuthority: the store's rule that a user keeps its domain is what the handler
// answers: 422 for an admin, and for anyone else the 403 of a field only an admin may change
// (authorization comes before validation).
func TestPatchUserAuthority(t *testing.T) {
	s := newPatchStore(t)
	f := seedSite(t, s, "example.com")
	other := seedSite(t, s, "other.com")
	admin, self := storedCaller(t, s, f.admin, keys.PermissionAdmin), storedCaller(t, s, f.user, keys.PermissionUser)
	before := storeSnapshot(t, s)
	for _, tt := range []struct {
		name   string
		caller *keys.Caller
		value  string
		status int
		want   string
	}{
		{"admin, another domain", admin,
			other.domain.ID, 422, `{"error":"validation failed","failures":[{"field":"authority_id","reason":"cannot be changed"}]}`},
		{"admin, empty", admin,
			"", 422, `{"error":"validation failed","failures":[{"field":"authority_id","reason":"cannot be changed"}]}`},
		{"self, another domain", self,
			other.domain.ID, 403, `{"error":"only an admin may change authority_id"}`},
	} {
		w := patch(t, patchRouter(s, tt.caller), "/users/"+f.user.ID, map[string]any{"authority_id": tt.value, "name": "Moved"})
		if w.Code != tt.status || w.Body.String() != tt.want {
			t.Errorf("%s: %d %s, want %d %s", tt.name, w.Code, w.Body, tt.status, tt.want)
		}
	}
	if diff := cmp.Diff(before, storeSnapshot(t, s)); diff != "" {
		t.Errorf("store changed (-before +after):\n%s", diff)
	}
	// The stored value, sent back, is not a change.
	w := patch(t, patchRouter(s, self),
		"/users/"+f.user.ID, map[string]any{"authority_id": f.domain.ID, "name": "Renamed"})
	if w.Code != http.StatusOK {
		t.Errorf("PATCH with the stored authority_id: %d %s", w.Code, w.Body)
	}
}

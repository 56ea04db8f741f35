package badgerstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestUpdateKey_Check: the hook sees the key as stored and as it would be stored (scopes
// normalised), and its error aborts the update with nothing written.
func TestUpdateKey_Check(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	k := &keys.APIKey{Name: "panel", UserID: f.user.ID, Scopes: []string{"systems.read"}}
	mustCreateKey(t, s, k)

	var sawBefore, sawAfter *keys.APIKey
	refuse := errors.New("no")
	before := snapshot(t, s)
	_, err := s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{
		Name: ptr("renamed"), Scopes: &[]string{"systems.READ", "zones"},
		Check: func(b, a *keys.APIKey) error { sawBefore, sawAfter = b, a; return refuse },
	})
	if !errors.Is(err, refuse) {
		t.Fatalf("UpdateKey: %v, want the hook's error", err)
	}
	if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
		t.Errorf("a refused update changed the store (-before +after):\n%s", diff)
	}
	if sawBefore == nil || sawBefore.Name != "panel" || !cmp.Equal(sawBefore.Scopes, []string{"systems.read"}) || sawBefore.Hash != "" {
		t.Errorf("before = %+v", sawBefore)
	}
	if sawAfter == nil || sawAfter.Name != "renamed" || !cmp.Equal(sawAfter.Scopes, []string{"systems.read", "zones"}) || sawAfter.Hash != "" {
		t.Errorf("after = %+v", sawAfter)
	}

	// A hook that allows: the update is stored, and the key still authenticates (the hash
	// the hook never saw is kept).
	got, err := s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{Name: ptr("renamed"), Check: func(b, a *keys.APIKey) error { return nil }})
	if err != nil || got.Name != "renamed" {
		t.Fatalf("UpdateKey: %+v, %v", got, err)
	}
	if _, _, _, err := s.KeyForAuth(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
}

// TestScopeLimits: too many or too long scopes are a 422 on field "scopes", on create and on
// update, with nothing written.
func TestScopeLimits(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	k := &keys.APIKey{Name: "panel", UserID: f.user.ID, Scopes: []string{"systems.read"}}
	mustCreateKey(t, s, k)
	tooMany := make([]string, keys.MaxScopes+1)
	for i := range tooMany {
		tooMany[i] = "s" + strings.Repeat("x", i%10)
	}
	tooLong := []string{strings.Repeat("a", keys.MaxScopeLength+1)}

	before := snapshot(t, s)
	for name, scopes := range map[string][]string{"too many": tooMany, "too long": tooLong} {
		_, err := s.CreateKey(t.Context(), &keys.APIKey{Name: "new", UserID: f.user.ID, Scopes: scopes})
		if fs := keys.ErrorFailures(err); keys.ErrorCode(err) != keys.EUNPROCESSABLE || len(fs) != 1 || fs[0].Field != "scopes" {
			t.Errorf("create %s: %v", name, err)
		}
		_, err = s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{Scopes: &scopes})
		if fs := keys.ErrorFailures(err); keys.ErrorCode(err) != keys.EUNPROCESSABLE || len(fs) != 1 || fs[0].Field != "scopes" {
			t.Errorf("update %s: %v", name, err)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
		t.Errorf("the store changed (-before +after):\n%s", diff)
	}
	// At the limits: accepted.
	atLimit := make([]string, keys.MaxScopes)
	for i := range atLimit {
		atLimit[i] = "s" + strings.Repeat("x", i%40)
	}
	if _, err := s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{Scopes: &atLimit}); err != nil {
		t.Errorf("64 scopes: %v", err)
	}
	if _, err := s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{Scopes: &[]string{strings.Repeat("a", keys.MaxScopeLength-5) + ".READ"}}); err != nil {
		t.Errorf("a 64-character scope: %v", err)
	}
}

// TestModifyUser: the change function edits the stored record in the transaction; its error
// aborts with nothing written; validation and the fixed authority apply as in UpdateUser.
func TestModifyUser(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	before := snapshot(t, s)
	refuse := keys.Errorf(keys.EFORBIDDEN, "no")
	if _, err := s.ModifyUser(t.Context(), f.user.ID, func(u *keys.User) error { u.SysAdmin = true; return refuse }); err != refuse {
		t.Fatalf("ModifyUser: %v, want the change's error", err)
	}
	if _, err := s.ModifyUser(t.Context(), f.user.ID, func(u *keys.User) error { u.AuthorityID = "authority-other"; return nil }); keys.ErrorCode(err) != keys.EUNPROCESSABLE {
		t.Errorf("moving a user: %v, want a 422", err)
	}
	if _, err := s.ModifyUser(t.Context(), f.user.ID, func(u *keys.User) error { u.Email = "none"; return nil }); keys.ErrorCode(err) != keys.EUNPROCESSABLE {
		t.Errorf("a bad email: %v, want a 422", err)
	}
	if _, err := s.ModifyUser(t.Context(), "user-missing", func(*keys.User) error { return nil }); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Errorf("a missing user: %v, want a 404", err)
	}
	if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
		t.Errorf("the store changed (-before +after):\n%s", diff)
	}

	var seen keys.User
	got, err := s.ModifyUser(t.Context(), f.user.ID, func(u *keys.User) error { seen = *u; u.Name = " New name "; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if seen.ID != f.user.ID || seen.Name != "Plain" || !cmp.Equal(seen.Groups, []string{"zone-1"}) {
		t.Errorf("the change saw %+v, want the stored user", seen)
	}
	if got.Name != "New name" || got.ID != f.user.ID || got.AuthorityID != f.domain.ID || got.CreatedAt != f.user.CreatedAt {
		t.Errorf("stored %+v", got)
	}
	if stored, _ := s.GetUser(t.Context(), f.user.ID); !cmp.Equal(stored, got) {
		t.Errorf("GetUser %+v, ModifyUser returned %+v", stored, got)
	}
}

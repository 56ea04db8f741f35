package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var keyTests = []test{
	{"Create", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a, b := mustSite(t, s, "a.example"), mustSite(t, s, "b.example")
		exp := time.Now().Add(time.Hour).Unix()
		k := &keys.APIKey{
			ID: "chosen-by-caller", Name: " Reader ", Description: " reads ", UserID: a.admin.ID,
			AuthorityID: b.domain.ID, Scopes: []string{"zones", "zones.READ"}, ExpiresAt: &exp,
			Hash: "chosen-by-caller",
		}
		pt, err := s.CreateKey(ctx, k)
		mustNot(t, "CreateKey", err)
		id, _, ok := keys.ParseKey(string(pt))
		if !ok || id != k.ID {
			t.Fatalf("plaintext of key %s does not parse to its id", k.ID)
		}
		want := keys.APIKey{
			ID: id, Name: "Reader", Description: "reads", UserID: a.admin.ID, AuthorityID: a.domain.ID,
			Scopes: []string{"zones", "zones.read"}, Permissions: keys.PermissionUser, ExpiresAt: &exp,
			CreatedAt: k.CreatedAt, UpdatedAt: k.CreatedAt, AllowedCIDRs: []string{},
		}
		if diff := cmp.Diff(&want, k); diff != "" || k.CreatedAt <= 0 {
			t.Errorf("created key (-want +got):\n%s", diff)
		}
		got, err := s.GetKey(ctx, id)
		mustNot(t, "GetKey", err)
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("GetKey (-want +got):\n%s", diff)
		}
		fk, fu, fd, err := s.KeyForAuth(ctx, id)
		mustNot(t, "KeyForAuth", err)
		if fk.Hash == "" || fk.Hash == "chosen-by-caller" || fu.ID != a.admin.ID || fd.ID != a.domain.ID {
			t.Errorf("KeyForAuth = key with hash %q, user %s, domain %s", fk.Hash, fu.ID, fd.ID)
		}
		fk.Hash = ""
		if diff := cmp.Diff(&want, fk); diff != "" {
			t.Errorf("KeyForAuth key (-want +got):\n%s", diff)
		}
		authenticates(t, s, id, string(pt))
		wantCounts(t, s, 2, 4, 1)
	}},
	{"CreateValidation", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		mustKey(t, s, a.user, "Taken")
		before := snap(t, s)
		past := time.Now().Add(-time.Hour).Unix()
		tooMany := make([]string, keys.MaxScopes+1)
		for i := range tooMany {
			tooMany[i] = "s"
		}
		for _, tt := range []struct {
			k    keys.APIKey
			want []failure
		}{
			{keys.APIKey{UserID: a.user.ID}, []failure{{"name", "is required"}}},
			{keys.APIKey{Name: strings.Repeat("n", 256), UserID: a.user.ID}, []failure{{"name", ""}}},
			{keys.APIKey{Name: "n"}, []failure{{"user_id", "is required"}}},
			{keys.APIKey{Name: "n", UserID: "user-missing"}, []failure{{"user_id", "does not exist"}}},
			{keys.APIKey{Name: " taken ", UserID: a.admin.ID}, []failure{{"name", "has already been taken"}}},
			{keys.APIKey{Name: "n", UserID: a.user.ID, Permissions: keys.PermissionAdmin}, []failure{{"permissions", ""}}},
			{keys.APIKey{Name: "n", UserID: a.user.ID, Permissions: "root"}, []failure{{"permissions", ""}}},
			{keys.APIKey{Name: "n", UserID: a.user.ID, ExpiresAt: &past}, []failure{{"expires_at", "must be in the future"}}},
			{keys.APIKey{Name: "n", UserID: a.user.ID, Scopes: tooMany}, []failure{{"scopes", ""}}},
		} {
			_, err := s.CreateKey(ctx, &tt.k)
			wantErr(t, "CreateKey", err, keys.EUNPROCESSABLE, tt.want...)
		}
		for _, scope := range []string{"Zones", "zones.delete", "a.b.c", ".read", ""} {
			_, err := s.CreateKey(ctx, &keys.APIKey{Name: "n", UserID: a.user.ID, Scopes: []string{scope}})
			wantErr(t, "CreateKey with scope "+scope, err, keys.EINVALID)
		}
		unchanged(t, s, before)
	}},
	{"GetMissing", func(t *testing.T, s keys.Service) {
		_, err := s.GetKey(t.Context(), "0123456789abcdef0123456789abcdef")
		wantErr(t, "GetKey", err, keys.ENOTFOUND)
		_, _, _, err = s.KeyForAuth(t.Context(), "0123456789abcdef0123456789abcdef")
		wantErr(t, "KeyForAuth", err, keys.ENOTFOUND)
	}},
	{"Update", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		exp := time.Now().Add(time.Hour).Unix()
		k, pt := mustKey(t, s, a.admin, "Alpha", func(k *keys.APIKey) { k.Description = "d"; k.Scopes = []string{"x"}; k.ExpiresAt = &exp })
		later := exp + 3600
		got, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{
			Name: ptr(" ALPHA "), Scopes: ptr([]string{"y.Write"}), Permissions: ptr(keys.PermissionAdmin),
			ExpiresAt: keys.NullableInt64{Set: true, Value: &later},
		})
		mustNot(t, "UpdateKey", err)
		want := *k
		want.Name, want.Scopes, want.Permissions, want.ExpiresAt, want.UpdatedAt = "ALPHA", []string{"y.write"}, keys.PermissionAdmin, &later, got.UpdatedAt
		if diff := cmp.Diff(&want, got); diff != "" || got.UpdatedAt < k.CreatedAt {
			t.Errorf("UpdateKey (-want +got):\n%s", diff)
		}
		// Unset fields stay; a set ExpiresAt without a value makes the key never expire.
		got, err = s.UpdateKey(ctx, k.ID, keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true}})
		mustNot(t, "UpdateKey expires_at null", err)
		want.ExpiresAt, want.UpdatedAt = nil, got.UpdatedAt
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("UpdateKey clearing expires_at (-want +got):\n%s", diff)
		}
		if stored, _ := s.GetKey(ctx, k.ID); !cmp.Equal(stored, got) {
			t.Errorf("GetKey = %+v, UpdateKey returned %+v", stored, got)
		}
		authenticates(t, s, k.ID, pt) // an update keeps the secret
	}},
	{"UpdateRefused", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, _ := mustKey(t, s, a.user, "Alpha")
		mustKey(t, s, a.user, "Beta")
		before := snap(t, s)
		past := time.Now().Add(-time.Hour).Unix()
		for _, tt := range []struct {
			u    keys.KeyUpdate
			want []failure
		}{
			{keys.KeyUpdate{Name: ptr("  ")}, []failure{{"name", "is required"}}},
			{keys.KeyUpdate{Name: ptr("beta")}, []failure{{"name", "has already been taken"}}},
			{keys.KeyUpdate{Permissions: ptr(keys.PermissionSupport)}, []failure{{"permissions", ""}}},
			{keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true, Value: &past}}, []failure{{"expires_at", "must be in the future"}}},
		} {
			_, err := s.UpdateKey(ctx, k.ID, tt.u)
			wantErr(t, "UpdateKey", err, keys.EUNPROCESSABLE, tt.want...)
		}
		_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Scopes: ptr([]string{"Bad"})})
		wantErr(t, "UpdateKey with a malformed scope", err, keys.EINVALID)
		_, err = s.UpdateKey(ctx, "0123456789abcdef0123456789abcdef", keys.KeyUpdate{Name: ptr("x")})
		wantErr(t, "UpdateKey of a missing key", err, keys.ENOTFOUND)

		// Check sees the key as stored and as it would be stored; its error aborts the update.
		refuse := errors.New("refused by the caller")
		_, err = s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: ptr("Gamma"), Check: func(before, after *keys.APIKey) error {
			if before.Name != "Alpha" || after.Name != "Gamma" || before.Hash != "" || after.Hash != "" {
				t.Errorf("Check saw before %q (hash %q), after %q (hash %q)", before.Name, before.Hash, after.Name, after.Hash)
			}
			return refuse
		}})
		if !errors.Is(err, refuse) {
			t.Errorf("UpdateKey with a failing Check: %v, want Check's error", err)
		}
		unchanged(t, s, before)
	}},
	{"Delete", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.user, "Alpha")
		other, otherPT := mustKey(t, s, a.user, "Beta")
		mustNot(t, "DeleteKey", s.DeleteKey(ctx, k.ID))
		gone(t, s, k.ID, pt)
		authenticates(t, s, other.ID, otherPT)
		wantErr(t, "DeleteKey again", s.DeleteKey(ctx, k.ID), keys.ENOTFOUND)
		wantCounts(t, s, 1, 2, 1)
	}},
	{"DeleteCheck", func(t *testing.T, s keys.Service) {
		// A check sees the key as stored, without its hash; its error aborts the delete.
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.user, "Alpha")
		before := snap(t, s)
		refuse := errors.New("refused by the caller")
		err := s.DeleteKey(ctx, k.ID, func(got *keys.APIKey) error {
			if got.ID != k.ID || got.Name != "Alpha" || got.Hash != "" {
				t.Errorf("check saw %s %q (hash %q)", got.ID, got.Name, got.Hash)
			}
			return refuse
		})
		if !errors.Is(err, refuse) {
			t.Errorf("DeleteKey with a failing check: %v, want the check's error", err)
		}
		unchanged(t, s, before)
		authenticates(t, s, k.ID, pt)
		called := false
		wantErr(t, "DeleteKey of a missing key with a check", s.DeleteKey(ctx, "missing", func(*keys.APIKey) error { called = true; return nil }), keys.ENOTFOUND)
		if called {
			t.Error("the check was called for a missing key")
		}
		mustNot(t, "DeleteKey with a passing check", s.DeleteKey(ctx, k.ID, func(*keys.APIKey) error { return nil }))
		gone(t, s, k.ID, pt)
	}},
	{"WritesRecheckTheCaller", func(t *testing.T, s keys.Service) {
		// A write whose context carries a caller is refused once the caller's key is gone, or
		// it or its user changed, since the caller was read; nothing is stored then.
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, _ := mustKey(t, s, a.admin, "caller", func(k *keys.APIKey) { k.Scopes, k.Permissions = []string{"public"}, keys.PermissionAdmin })
		caller := keys.ContextWithCaller(ctx, &keys.Caller{Key: k, User: a.admin, Permissions: keys.PermissionAdmin})
		mustNot(t, "a write by an unchanged caller", s.CreateUser(caller, &keys.User{AuthorityID: a.domain.ID, Name: "New", Email: "new@a.example"}))

		_, err := s.ModifyUser(ctx, a.admin.ID, func(u *keys.User) error { u.SysAdmin = false; return nil })
		mustNot(t, "demote the caller's user", err)
		before := snap(t, s)
		err = s.CreateUser(caller, &keys.User{AuthorityID: a.domain.ID, Name: "Late", Email: "late@a.example"})
		if !errors.Is(err, keys.ErrCallerChanged) {
			t.Errorf("a write by a demoted caller: %v, want %v", err, keys.ErrCallerChanged)
		}
		unchanged(t, s, before)

		mustNot(t, "DeleteKey", s.DeleteKey(ctx, k.ID))
		before = snap(t, s)
		_, err = s.UpdateKey(caller, k.ID, keys.KeyUpdate{Name: ptr("back")})
		if !errors.Is(err, keys.ErrUnknownKey) {
			t.Errorf("a write by a deleted caller: %v, want %v", err, keys.ErrUnknownKey)
		}
		unchanged(t, s, before)
	}},
}

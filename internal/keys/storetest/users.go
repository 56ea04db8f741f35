package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var userTests = []test{
	{"CreateNormalisesAndStamps", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		u := &keys.User{ID: "chosen-by-caller", AuthorityID: d.ID, Name: " Ann ", Email: " ann@example.com ", Support: true}
		mustNot(t, "CreateUser", s.CreateUser(ctx, u))
		if u.ID == "" || u.ID == "chosen-by-caller" {
			t.Errorf("id = %q, want one the store chose", u.ID)
		}
		if u.Name != "Ann" || u.Email != "ann@example.com" || u.Groups == nil || !u.Support || u.SysAdmin {
			t.Errorf("created %+v, want name and email trimmed, groups empty, not nil", u)
		}
		if u.CreatedAt <= 0 || u.UpdatedAt != u.CreatedAt {
			t.Errorf("timestamps created_at %d updated_at %d", u.CreatedAt, u.UpdatedAt)
		}
		got, err := s.GetUser(ctx, u.ID)
		mustNot(t, "GetUser", err)
		if diff := cmp.Diff(u, got); diff != "" {
			t.Errorf("GetUser differs from the created record (-created +got):\n%s", diff)
		}
		wantCounts(t, s, 1, 1, 0)
	}},
	{"CreateValidation", func(t *testing.T, s keys.Service) {
		d := mustDomain(t, s, "Main", "example.com")
		before := snap(t, s)
		for _, tt := range []struct {
			u    keys.User
			want []failure
		}{
			{keys.User{Name: "n", Email: "n@x"}, []failure{{"authority_id", "is required"}}},
			{keys.User{Name: "n", Email: "n@x", AuthorityID: "authority-missing"}, []failure{{"authority_id", "does not exist"}}},
			{keys.User{AuthorityID: d.ID}, []failure{{"name", "is required"}, {"email", "is required"}}},
			{keys.User{AuthorityID: d.ID, Name: strings.Repeat("n", 256), Email: "no-at"}, []failure{{"name", ""}, {"email", "is invalid"}}},
		} {
			wantErr(t, "CreateUser", s.CreateUser(t.Context(), &tt.u), keys.EUNPROCESSABLE, tt.want...)
		}
		unchanged(t, s, before)
	}},
	{"GetMissing", func(t *testing.T, s keys.Service) {
		_, err := s.GetUser(t.Context(), "user-missing")
		wantErr(t, "GetUser", err, keys.ENOTFOUND)
	}},
	{"ListByDomainSorted", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d1 := mustDomain(t, s, "One", "one.example")
		d2 := mustDomain(t, s, "Two", "two.example")
		b := mustUser(t, s, d1, "bob", false)
		a := mustUser(t, s, d1, "Ann", false)
		c := mustUser(t, s, d2, "Cid", false)
		userIDs := func(authority string) []string {
			list, err := s.ListUsers(ctx, authority)
			mustNot(t, "ListUsers", err)
			return ids(list, func(u *keys.User) string { return u.ID })
		}
		if diff := cmp.Diff([]string{a.ID, b.ID}, userIDs(d1.ID)); diff != "" {
			t.Errorf("ListUsers(one) (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{a.ID, b.ID, c.ID}, userIDs("")); diff != "" {
			t.Errorf("ListUsers(all) (-want +got):\n%s", diff)
		}
		if got := userIDs("authority-missing"); len(got) != 0 {
			t.Errorf("ListUsers of an unknown domain = %v, want none", got)
		}
	}},
	{"Modify", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		u := mustUser(t, s, d, "Ann", false)
		got, err := s.ModifyUser(ctx, u.ID, func(cur *keys.User) error {
			if diff := cmp.Diff(u, cur); diff != "" {
				t.Errorf("change sees (-stored +seen):\n%s", diff)
			}
			cur.SysAdmin, cur.Groups, cur.Name = true, []string{"g1", "g2"}, " Anna "
			cur.ID, cur.CreatedAt = "user-other", 1 // neither can change
			return nil
		})
		mustNot(t, "ModifyUser", err)
		want := *u
		want.SysAdmin, want.Groups, want.Name, want.UpdatedAt = true, []string{"g1", "g2"}, "Anna", got.UpdatedAt
		if diff := cmp.Diff(&want, got); diff != "" || got.UpdatedAt < u.CreatedAt {
			t.Errorf("ModifyUser returned (-want +got):\n%s", diff)
		}
		if stored, _ := s.GetUser(ctx, u.ID); !cmp.Equal(stored, got) {
			t.Errorf("GetUser = %+v, ModifyUser returned %+v", stored, got)
		}
	}},
	{"ModifyRefused", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		other := mustDomain(t, s, "Other", "other.com")
		u := mustUser(t, s, d, "Ann", false)
		before := snap(t, s)
		for _, authority := range []string{other.ID, "", "authority-missing"} {
			_, err := s.ModifyUser(ctx, u.ID, func(cur *keys.User) error { cur.AuthorityID = authority; return nil })
			wantErr(t, "ModifyUser moving to "+authority, err, keys.EUNPROCESSABLE, failure{"authority_id", "cannot be changed"})
		}
		_, err := s.ModifyUser(ctx, u.ID, func(cur *keys.User) error { cur.Email = "none"; return nil })
		wantErr(t, "ModifyUser invalid", err, keys.EUNPROCESSABLE, failure{"email", "is invalid"})
		refuse := errors.New("refused by the caller")
		_, err = s.ModifyUser(ctx, u.ID, func(cur *keys.User) error { cur.SysAdmin = true; return refuse })
		if !errors.Is(err, refuse) {
			t.Errorf("ModifyUser with a failing change: %v, want the change's error", err)
		}
		_, err = s.ModifyUser(ctx, "user-missing", func(*keys.User) error { return nil })
		wantErr(t, "ModifyUser of a missing user", err, keys.ENOTFOUND)
		unchanged(t, s, before)
	}},
	{"DeleteMissing", func(t *testing.T, s keys.Service) {
		wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), "user-missing"), keys.ENOTFOUND)
	}},
	{"DeleteCheck", func(t *testing.T, s keys.Service) {
		// A check sees the user and its keys as stored, without hashes; its error aborts the
		// delete, cascade included.
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k1, pt1 := mustKey(t, s, a.user, "one")
		k2, _ := mustKey(t, s, a.user, "two")
		mustKey(t, s, a.admin, "other user's")
		before := snap(t, s)
		refuse := errors.New("refused by the caller")
		err := s.DeleteUser(ctx, a.user.ID, func(u *keys.User, list []*keys.APIKey) error {
			got := keyIDs(list)
			slices.Sort(got)
			want := []string{k1.ID, k2.ID}
			slices.Sort(want)
			if u.ID != a.user.ID || !slices.Equal(got, want) || slices.ContainsFunc(list, func(k *keys.APIKey) bool { return k.Hash != "" }) {
				t.Errorf("check saw user %s with keys %v, want %s with %v and no hashes", u.ID, got, a.user.ID, want)
			}
			return refuse
		})
		if !errors.Is(err, refuse) {
			t.Errorf("DeleteUser with a failing check: %v, want the check's error", err)
		}
		unchanged(t, s, before)
		authenticates(t, s, k1.ID, pt1)
		mustNot(t, "DeleteUser with a passing check", s.DeleteUser(ctx, a.user.ID, func(*keys.User, []*keys.APIKey) error { return nil }))
		gone(t, s, k1.ID, pt1)
	}},
}

package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var domainTests = []test{
	{"CreateNormalisesAndStamps", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := &keys.Domain{ID: "chosen-by-caller", Name: " Main ", Domain: "HTTPS://Example.COM:8443/app", Description: " about "}
		mustNot(t, "CreateDomain", s.CreateDomain(ctx, d))
		if d.ID == "" || d.ID == "chosen-by-caller" {
			t.Errorf("id = %q, want one the store chose", d.ID)
		}
		if d.Name != "Main" || d.Domain != "example.com" || d.Description != "about" {
			t.Errorf("created %+v, want name, host and description normalised", d)
		}
		if d.CreatedAt <= 0 || d.UpdatedAt != d.CreatedAt {
			t.Errorf("timestamps created_at %d updated_at %d", d.CreatedAt, d.UpdatedAt)
		}
		got, err := s.GetDomain(ctx, d.ID)
		mustNot(t, "GetDomain", err)
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("GetDomain differs from the created record (-created +got):\n%s", diff)
		}
		wantCounts(t, s, 1, 0, 0)
	}},
	{"CreateValidation", func(t *testing.T, s keys.Service) {
		mustDomain(t, s, "Taken", "taken.example")
		before := snap(t, s)
		for _, tt := range []struct {
			d    keys.Domain
			want []failure
		}{
			{keys.Domain{}, []failure{{"name", "is required"}, {"domain", "is required"}}},
			{keys.Domain{Name: "  ", Domain: "ok.example"}, []failure{{"name", "is required"}}},
			{keys.Domain{Name: strings.Repeat("n", 256), Domain: "ok.example"}, []failure{{"name", ""}}},
			{keys.Domain{Name: "bad", Domain: "exa mple"}, []failure{{"domain", "is invalid"}}},
			{keys.Domain{Name: "dup", Domain: "TAKEN.example:443"}, []failure{{"domain", "has already been taken"}}},
		} {
			err := s.CreateDomain(t.Context(), &tt.d)
			wantErr(t, "CreateDomain", err, keys.EUNPROCESSABLE, tt.want...)
		}
		unchanged(t, s, before)
	}},
	{"GetMissing", func(t *testing.T, s keys.Service) {
		_, err := s.GetDomain(t.Context(), "authority-missing")
		wantErr(t, "GetDomain", err, keys.ENOTFOUND)
	}},
	{"DomainByHost", func(t *testing.T, s keys.Service) {
		d := mustDomain(t, s, "Main", "example.com")
		for _, host := range []string{"example.com", "EXAMPLE.com", "example.com:8080", "https://example.com/x", "example.com."} {
			got, err := s.DomainByHost(t.Context(), host)
			if err != nil || got.ID != d.ID {
				t.Errorf("DomainByHost(%q) = %v, %v; want %s", host, got, err, d.ID)
			}
		}
		for _, host := range []string{"", "other.com", "sub.example.com", "exa mple.com"} {
			_, err := s.DomainByHost(t.Context(), host)
			wantErr(t, "DomainByHost("+host+")", err, keys.ENOTFOUND)
		}
	}},
	{"ListSorted", func(t *testing.T, s keys.Service) {
		list, err := s.ListDomains(t.Context())
		if err != nil || len(list) != 0 {
			t.Errorf("ListDomains of an empty store = %v, %v", list, err)
		}
		b := mustDomain(t, s, "beta", "b.example")
		a := mustDomain(t, s, "Alpha", "a.example")
		c := mustDomain(t, s, "Gamma", "c.example")
		list, err = s.ListDomains(t.Context())
		mustNot(t, "ListDomains", err)
		if diff := cmp.Diff([]string{a.ID, b.ID, c.ID}, ids(list, func(d *keys.Domain) string { return d.ID })); diff != "" {
			t.Errorf("ListDomains order, by name ignoring case (-want +got):\n%s", diff)
		}
	}},
	{"Modify", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		got, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error {
			if diff := cmp.Diff(d, cur); diff != "" {
				t.Errorf("change sees (-stored +seen):\n%s", diff)
			}
			cur.Description = " described "
			cur.ID, cur.CreatedAt = "authority-other", 1 // neither can change
			return nil
		})
		mustNot(t, "ModifyDomain", err)
		want := *d
		want.Description = "described"
		want.UpdatedAt = got.UpdatedAt
		if diff := cmp.Diff(&want, got); diff != "" || got.UpdatedAt < d.CreatedAt {
			t.Errorf("ModifyDomain returned (-want +got):\n%s", diff)
		}
		if stored, _ := s.GetDomain(ctx, d.ID); !cmp.Equal(stored, got) {
			t.Errorf("GetDomain = %+v, ModifyDomain returned %+v", stored, got)
		}

		// A new host moves the host index.
		_, err = s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Domain = "NEW.example.com"; return nil })
		mustNot(t, "ModifyDomain host", err)
		_, err = s.DomainByHost(ctx, "example.com")
		wantErr(t, "DomainByHost(old host)", err, keys.ENOTFOUND)
		if byHost, err := s.DomainByHost(ctx, "new.example.com"); err != nil || byHost.ID != d.ID {
			t.Errorf("DomainByHost(new host) = %v, %v", byHost, err)
		}
		wantCounts(t, s, 1, 0, 0)
	}},
	{"ModifyRefused", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		mustDomain(t, s, "Other", "other.com")
		before := snap(t, s)
		_, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Domain = "Other.com"; return nil })
		wantErr(t, "ModifyDomain to a taken host", err, keys.EUNPROCESSABLE, failure{"domain", "has already been taken"})
		_, err = s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Name, cur.Domain = "", "bad host"; return nil })
		wantErr(t, "ModifyDomain invalid", err, keys.EUNPROCESSABLE, failure{"name", "is required"}, failure{"domain", "is invalid"})
		refuse := errors.New("refused by the caller")
		_, err = s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Name = "changed"; return refuse })
		if !errors.Is(err, refuse) {
			t.Errorf("ModifyDomain with a failing change: %v, want the change's error", err)
		}
		_, err = s.ModifyDomain(ctx, "authority-missing", func(*keys.Domain) error { return nil })
		wantErr(t, "ModifyDomain of a missing domain", err, keys.ENOTFOUND)
		unchanged(t, s, before)
	}},
	{"DeleteMissing", func(t *testing.T, s keys.Service) {
		wantErr(t, "DeleteDomain", s.DeleteDomain(t.Context(), "authority-missing"), keys.ENOTFOUND)
	}},
	{"DeleteCheck", func(t *testing.T, s keys.Service) {
		// A check sees each user of the domain with its keys; its error aborts the whole
		// cascade.
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.user, "one")
		before := snap(t, s)
		refuse := errors.New("refused by the caller")
		seen := map[string]int{}
		err := s.DeleteDomain(ctx, a.domain.ID, func(u *keys.User, list []*keys.APIKey) error {
			seen[u.ID] = len(list)
			if u.ID == a.user.ID {
				return refuse
			}
			return nil
		})
		if !errors.Is(err, refuse) {
			t.Errorf("DeleteDomain with a failing check: %v, want the check's error", err)
		}
		if seen[a.user.ID] != 1 {
			t.Errorf("the check saw users %v, want %s with its one key", seen, a.user.ID)
		}
		unchanged(t, s, before)
		authenticates(t, s, k.ID, pt)
		mustNot(t, "DeleteDomain with a passing check", s.DeleteDomain(ctx, a.domain.ID, func(*keys.User, []*keys.APIKey) error { return nil }))
		gone(t, s, k.ID, pt)
	}},
	{"OnChange", func(t *testing.T, s keys.Service) {
		var seen []keys.Change
		s.OnChange(func(c keys.Change) { seen = append(seen, c) })
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		u := mustUser(t, s, d, "Plain", false)
		k, _ := mustKey(t, s, u, "k")
		_, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Name = "M"; return nil })
		mustNot(t, "ModifyDomain", err)
		_, err = s.ModifyUser(ctx, u.ID, func(cur *keys.User) error { cur.Name = "P"; return nil })
		mustNot(t, "ModifyUser", err)
		_, err = s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Description: ptr("d")})
		mustNot(t, "UpdateKey", err)
		// Every change is reported before the write returns.
		want := []keys.Change{
			{Kind: keys.KindDomain, ID: d.ID}, {Kind: keys.KindUser, ID: u.ID}, {Kind: keys.KindKey, ID: k.ID},
			{Kind: keys.KindDomain, ID: d.ID}, {Kind: keys.KindUser, ID: u.ID}, {Kind: keys.KindKey, ID: k.ID},
		}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("changes reported (-want +got):\n%s", diff)
		}
		// A cascade reports every record it deletes (in any order), and nothing on failure.
		seen = nil
		wantErr(t, "DeleteKey of a missing key", s.DeleteKey(ctx, "missing"), keys.ENOTFOUND)
		mustNot(t, "DeleteDomain", s.DeleteDomain(ctx, d.ID))
		if diff := cmp.Diff(want[:3], seen, sortChanges); diff != "" {
			t.Errorf("changes reported by the cascade (-want +got):\n%s", diff)
		}
	}},
}

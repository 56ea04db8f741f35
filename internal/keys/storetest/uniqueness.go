package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// racers is how many goroutines race to take one name or host.
const racers = 16

var uniquenessTests = []test{
	{"DomainHost", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		// A host is freed by a move and by a delete.
		_, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Domain = "moved.example.com"; return nil })
		mustNot(t, "ModifyDomain", err)
		again := mustDomain(t, s, "Again", "Example.com")
		mustNot(t, "DeleteDomain", s.DeleteDomain(ctx, again.ID))
		mustDomain(t, s, "Third", "example.com")
		// A domain may keep its own host, in another spelling.
		_, err = s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Domain = "MOVED.example.com:80"; return nil })
		mustNot(t, "ModifyDomain to its own host", err)
	}},
	{"KeyNamePerDomain", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a, b := mustSite(t, s, "a.example"), mustSite(t, s, "b.example")
		k, _ := mustKey(t, s, a.user, "Alpha")
		// The name is taken for every user of the domain, in any case, and free in another.
		_, err := s.CreateKey(ctx, &keys.APIKey{Name: "ALPHA", UserID: a.admin.ID})
		wantErr(t, "CreateKey of a taken name", err, keys.EUNPROCESSABLE, failure{"name", "has already been taken"})
		mustKey(t, s, b.user, "alpha")
		// A rename in case only keeps the name; a rename frees the old name.
		_, err = s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: ptr("aLPHA")})
		mustNot(t, "UpdateKey renaming in case only", err)
		_, err = s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: ptr("Omega")})
		mustNot(t, "UpdateKey renaming", err)
		mustKey(t, s, a.admin, "Alpha")
		// A delete frees the name.
		mustNot(t, "DeleteKey", s.DeleteKey(ctx, k.ID))
		mustKey(t, s, a.user, "omega")
	}},
	{"KeyNameConcurrent", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		var (
			mu   sync.Mutex
			wins []string
		)
		race(racers, func(i int) {
			// Every other racer spells the name in capitals: the same name to the store.
			name := "Shared"
			if i%2 == 1 {
				name = "SHARED"
			}
			k := &keys.APIKey{Name: name, UserID: a.user.ID}
			_, err := s.CreateKey(t.Context(), k)
			switch keys.ErrorCode(err) {
			case "":
				mu.Lock()
				wins = append(wins, k.ID)
				mu.Unlock()
			case keys.ECONFLICT:
			default:
				wantErr(t, fmt.Sprintf("racer %d", i), err, keys.EUNPROCESSABLE, failure{"name", "has already been taken"})
			}
		})
		list, total, err := s.ListKeys(t.Context(), keys.KeyFilter{})
		mustNot(t, "ListKeys", err)
		if len(wins) != 1 || total != 1 || list[0].ID != wins[0] {
			t.Errorf("%d racers won %v; the store lists %v; want exactly one", racers, wins, keyIDs(list))
		}
		wantCounts(t, s, 1, 2, 1)
	}},
	{"DomainHostConcurrent", func(t *testing.T, s keys.Service) {
		var (
			mu   sync.Mutex
			wins []string
		)
		race(racers, func(i int) {
			d := &keys.Domain{Name: fmt.Sprintf("racer %d", i), Domain: "example.com"}
			err := s.CreateDomain(t.Context(), d)
			switch keys.ErrorCode(err) {
			case "":
				mu.Lock()
				wins = append(wins, d.ID)
				mu.Unlock()
			case keys.ECONFLICT:
			default:
				wantErr(t, fmt.Sprintf("racer %d", i), err, keys.EUNPROCESSABLE, failure{"domain", "has already been taken"})
			}
		})
		list, err := s.ListDomains(t.Context())
		mustNot(t, "ListDomains", err)
		if len(wins) != 1 || len(list) != 1 || list[0].ID != wins[0] {
			t.Errorf("%d racers won %v; the store lists %d domains; want exactly one", racers, wins, len(list))
		}
		wantCounts(t, s, 1, 0, 0)
	}},
}

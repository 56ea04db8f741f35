package storetest

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var paginationTests = []test{
	{"ListKeys", func(t *testing.T, s keys.Service) {
		a, b := mustSite(t, s, "a.example"), mustSite(t, s, "b.example")
		// Domain a: k00..k11 (every third described "special"), spelt in mixed case so that the
		// order must ignore case; domain b: three keys.
		var inA, special []string
		for i := range 12 {
			name := fmt.Sprintf("k%02d", i)
			if i%2 == 1 {
				name = fmt.Sprintf("K%02d", i)
			}
			k, _ := mustKey(t, s, a.user, name, func(k *keys.APIKey) {
				if i%3 == 0 {
					k.Description = "a SPECIAL key"
				}
			})
			inA = append(inA, k.ID)
			if i%3 == 0 {
				special = append(special, k.ID)
			}
		}
		var inB []string
		for _, name := range []string{"a", "z", "special"} {
			k, _ := mustKey(t, s, b.user, name)
			inB = append(inB, k.ID)
		}
		all := append(append([]string{}, inB[:1]...), inA...) // "a" < "k00" ... < "k11" < "special" < "z"
		all = append(all, inB[2], inB[1])

		for _, tt := range []struct {
			name  string
			f     keys.KeyFilter
			want  []string
			total int
		}{
			{"all", keys.KeyFilter{}, all, 15},
			{"first page", keys.KeyFilter{Limit: 5}, all[:5], 15},
			{"middle page", keys.KeyFilter{Limit: 5, Offset: 5}, all[5:10], 15},
			{"last page, short", keys.KeyFilter{Limit: 10, Offset: 10}, all[10:], 15},
			{"offset past the end", keys.KeyFilter{Limit: 5, Offset: 20}, nil, 15},
			{"offset without limit", keys.KeyFilter{Offset: 13}, all[13:], 15},
			{"one domain", keys.KeyFilter{AuthorityID: a.domain.ID}, inA, 12},
			{"one domain, paged", keys.KeyFilter{AuthorityID: a.domain.ID, Limit: 4, Offset: 8}, inA[8:], 12},
			{"unknown domain", keys.KeyFilter{AuthorityID: "authority-missing"}, nil, 0},
			{"q in name or description, any case", keys.KeyFilter{Q: "Special"}, append(append([]string{}, special...), inB[2]), 5},
			{"q and domain", keys.KeyFilter{Q: "special", AuthorityID: b.domain.ID}, inB[2:], 1},
			{"q and page", keys.KeyFilter{Q: "k1", Limit: 1, Offset: 1}, inA[11:], 2},
			{"q matching nothing", keys.KeyFilter{Q: "nothing"}, nil, 0},
		} {
			list, total, err := s.ListKeys(t.Context(), tt.f)
			mustNot(t, tt.name, err)
			if diff := cmp.Diff(tt.want, keyIDs(list), cmpopts.EquateEmpty()); diff != "" || total != tt.total {
				t.Errorf("%s: total %d, want %d; ids (-want +got):\n%s", tt.name, total, tt.total, diff)
			}
			for _, k := range list {
				if k.Hash != "" {
					t.Errorf("%s: key %s listed with its hash", tt.name, k.ID)
				}
			}
		}
	}},
}

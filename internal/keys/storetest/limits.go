package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// limitTests: a key's allowed_cidrs and rate_limit (docs/limits.md) are stored normalised on
// create, set, kept or cleared by an update, seen by Authenticate, and a bad value is a 422
// that changes nothing.
var limitTests = []test{
	{"CreateStoresLimitsNormalised", func(t *testing.T, s keys.Service) {
		st := mustSite(t, s, "limits.test")
		k, pt := mustKey(t, s, st.user, "limited", func(k *keys.APIKey) {
			k.AllowedCIDRs = []string{"10.1.2.3/8", "2001:DB8::/32", "10.0.0.0/8", "192.0.2.7"}
			k.RateLimit = &keys.RateLimit{Rate: 2.5, Burst: 4}
		})
		want := []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"}
		if diff := cmp.Diff(want, k.AllowedCIDRs); diff != "" {
			t.Errorf("created allowed_cidrs (-want +got):\n%s", diff)
		}
		got, err := s.GetKey(t.Context(), k.ID)
		mustNot(t, "GetKey", err)
		if diff := cmp.Diff(want, got.AllowedCIDRs); diff != "" {
			t.Errorf("stored allowed_cidrs (-want +got):\n%s", diff)
		}
		if got.RateLimit == nil || *got.RateLimit != (keys.RateLimit{Rate: 2.5, Burst: 4}) {
			t.Errorf("stored rate_limit %+v", got.RateLimit)
		}
		auth, err := s.Authenticate(t.Context(), pt, time.Now())
		mustNot(t, "Authenticate", err)
		if diff := cmp.Diff(want, auth.Key.AllowedCIDRs); diff != "" || auth.Key.RateLimit == nil {
			t.Errorf("Authenticate's key: allowed_cidrs (-want +got):\n%s rate_limit %+v", diff, auth.Key.RateLimit)
		}
	}},
	{"CreateWithoutLimits", func(t *testing.T, s keys.Service) {
		st := mustSite(t, s, "limits.test")
		k, _ := mustKey(t, s, st.user, "plain")
		got, err := s.GetKey(t.Context(), k.ID)
		mustNot(t, "GetKey", err)
		if len(got.AllowedCIDRs) != 0 || got.RateLimit != nil {
			t.Errorf("limits %q %+v, want none", got.AllowedCIDRs, got.RateLimit)
		}
	}},
	{"CreateRefusesBadLimits", func(t *testing.T, s keys.Service) {
		st := mustSite(t, s, "limits.test")
		before := snap(t, s)
		_, err := s.CreateKey(t.Context(), &keys.APIKey{
			Name: "bad", UserID: st.user.ID, AllowedCIDRs: []string{"10.0.0.0/33"}, RateLimit: &keys.RateLimit{Rate: 0, Burst: 0},
		})
		wantErr(t, "CreateKey with bad limits", err, keys.EUNPROCESSABLE,
			failure{keys.FieldAllowedCIDRs, ""}, failure{keys.FieldRateLimit, "rate must be above 0 and at most 1e+06 requests per second"},
			failure{keys.FieldRateLimit, "burst must be from 1 to 1000000"})
		unchanged(t, s, before)
	}},
	{"UpdateSetsKeepsAndClearsLimits", func(t *testing.T, s keys.Service) {
		st := mustSite(t, s, "limits.test")
		k, _ := mustKey(t, s, st.user, "k")
		ctx := t.Context()
		steps := []struct {
			name      string
			u         keys.KeyUpdate
			wantCIDRs []string
			wantRate  *keys.RateLimit
		}{
			{"set", keys.KeyUpdate{AllowedCIDRs: keys.Some([]string{"::ffff:192.0.2.0/120"}), RateLimit: keys.Some(keys.RateLimit{Rate: 1, Burst: 1})},
				[]string{"192.0.2.0/24"}, &keys.RateLimit{Rate: 1, Burst: 1}},
			{"other fields keep them", keys.KeyUpdate{Description: ptr("d")}, []string{"192.0.2.0/24"}, &keys.RateLimit{Rate: 1, Burst: 1}},
			{"change the rate only", keys.KeyUpdate{RateLimit: keys.Some(keys.RateLimit{Rate: 100, Burst: 50})}, []string{"192.0.2.0/24"}, &keys.RateLimit{Rate: 100, Burst: 50}},
			{"null clears", keys.KeyUpdate{AllowedCIDRs: keys.Nullable[[]string]{Set: true}, RateLimit: keys.Nullable[keys.RateLimit]{Set: true}}, nil, nil},
		}
		for _, step := range steps {
			got, err := s.UpdateKey(ctx, k.ID, step.u)
			mustNot(t, "UpdateKey "+step.name, err)
			stored, err := s.GetKey(ctx, k.ID)
			mustNot(t, "GetKey", err)
			for _, g := range []*keys.APIKey{got, stored} {
				if len(g.AllowedCIDRs) != len(step.wantCIDRs) || len(step.wantCIDRs) > 0 && cmp.Diff(step.wantCIDRs, g.AllowedCIDRs) != "" {
					t.Errorf("%s: allowed_cidrs %q, want %q", step.name, g.AllowedCIDRs, step.wantCIDRs)
				}
				if (g.RateLimit == nil) != (step.wantRate == nil) || g.RateLimit != nil && *g.RateLimit != *step.wantRate {
					t.Errorf("%s: rate_limit %+v, want %+v", step.name, g.RateLimit, step.wantRate)
				}
			}
		}
	}},
	{"UpdateRefusesBadLimits", func(t *testing.T, s keys.Service) {
		st := mustSite(t, s, "limits.test")
		k, _ := mustKey(t, s, st.user, "k", func(k *keys.APIKey) {
			k.AllowedCIDRs = []string{"10.0.0.0/8"}
			k.RateLimit = &keys.RateLimit{Rate: 1, Burst: 2}
		})
		before := snap(t, s)
		for _, tt := range []struct {
			u    keys.KeyUpdate
			want failure
		}{
			{keys.KeyUpdate{AllowedCIDRs: keys.Some([]string{"10.0.0.0/8", "not a network"})}, failure{keys.FieldAllowedCIDRs, ""}},
			{keys.KeyUpdate{RateLimit: keys.Some(keys.RateLimit{Rate: 1, Burst: 0})}, failure{keys.FieldRateLimit, "burst must be from 1 to 1000000"}},
			{keys.KeyUpdate{Name: ptr("renamed"), RateLimit: keys.Some(keys.RateLimit{Rate: -1, Burst: 1})}, failure{keys.FieldRateLimit, ""}},
		} {
			_, err := s.UpdateKey(t.Context(), k.ID, tt.u)
			wantErr(t, "UpdateKey with a bad limit", err, keys.EUNPROCESSABLE, tt.want)
		}
		unchanged(t, s, before)
	}},
}

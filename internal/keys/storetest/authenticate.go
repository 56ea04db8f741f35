package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var authenticateTests = []test{
	{"Valid", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.user, "k", func(k *keys.APIKey) { k.Scopes = []string{"zones"} })
		res, err := s.Authenticate(t.Context(), pt, time.Now())
		mustNot(t, "Authenticate", err)
		if res.Key.ID != k.ID || res.Key.Hash != "" || res.User.ID != a.user.ID || res.Domain.ID != a.domain.ID {
			t.Errorf("Authenticate = key %s (hash %q), user %s, domain %s", res.Key.ID, res.Key.Hash, res.User.ID, res.Domain.ID)
		}
		if len(res.Key.Scopes) != 1 || res.Key.Scopes[0] != "zones" {
			t.Errorf("authenticated key has scopes %v", res.Key.Scopes)
		}
	}},
	{"Refused", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.user, "k")
		other, _, _, err := keys.Generate()
		mustNot(t, "Generate", err)
		_, otherSecret, _ := keys.ParseKey(string(other))
		for _, tt := range []struct{ name, key string }{
			{"empty", ""},
			{"not a key", "nonsense"},
			{"id only", k.ID},
			{"id and dot", k.ID + "."},
			{"wrong secret", k.ID + "." + otherSecret},
			{"unknown id", string(other)},
			{"trailing byte", pt + "\x00"},
			{"trailing space", pt + " "},
			{"id in capitals", strings.ToUpper(k.ID) + pt[len(k.ID):]},
			{"secret truncated", pt[:len(pt)-1]},
		} {
			if _, err := s.Authenticate(t.Context(), tt.key, time.Now()); err != keys.ErrUnknownKey {
				t.Errorf("%s: %v, want ErrUnknownKey", tt.name, err)
			}
		}
	}},
	{"Expired", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		exp := time.Now().Add(time.Hour).Unix()
		k, pt := mustKey(t, s, a.user, "k", func(k *keys.APIKey) { k.ExpiresAt = &exp })
		if _, err := s.Authenticate(t.Context(), pt, time.Unix(exp-1, 0)); err != nil {
			t.Errorf("a second before expires_at: %v", err)
		}
		for _, at := range []int64{exp, exp + 3600} {
			if _, err := s.Authenticate(t.Context(), pt, time.Unix(at, 0)); err != keys.ErrExpiredKey {
				t.Errorf("at expires_at%+d: %v, want ErrExpiredKey", at-exp, err)
			}
		}
		// Clearing expires_at brings it back.
		_, err := s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true}})
		mustNot(t, "UpdateKey", err)
		if _, err := s.Authenticate(t.Context(), pt, time.Unix(exp+3600, 0)); err != nil {
			t.Errorf("after clearing expires_at: %v", err)
		}
	}},
	{"Deleted", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.user, "k")
		authenticates(t, s, k.ID, pt)
		mustNot(t, "DeleteKey", s.DeleteKey(t.Context(), k.ID))
		gone(t, s, k.ID, pt)
	}},
}

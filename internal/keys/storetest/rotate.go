package storetest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Rotation (keys.Service.RotateKey, docs/keys.md#rotation): a new key copied from the old,
// the old one cut to the overlap, both in one transaction, and what a replaced key can no
// longer do. Times are judged through Authenticate's now, never by waiting.

// rotate rotates id with overlap and fails t on an error.
func rotate(t *testing.T, s keys.Service, id string, overlap time.Duration) *keys.RotatedKey {
	t.Helper()
	r, err := s.RotateKey(t.Context(), id, keys.KeyRotation{Overlap: overlap})
	if err != nil {
		t.Fatalf("RotateKey(%s, %s): %v", id, overlap, err)
	}
	return r
}

// authenticatesAt checks that plaintext authenticates at now as the key id (err nil), or fails
// with want.
func authenticatesAt(t *testing.T, s keys.Service, what, plaintext string, now time.Time, want error) {
	t.Helper()
	_, err := s.Authenticate(t.Context(), plaintext, now)
	if !errors.Is(err, want) && !(err == nil && want == nil) {
		t.Errorf("%s: Authenticate at %s: %v, want %v", what, now.Format(time.RFC3339), err, want)
	}
}

var rotationTests = []test{
	{"CopiesTheKeyAndCutsTheOldToTheOverlap", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		exp := time.Now().Add(48 * time.Hour).Unix()
		old, oldPT := mustKey(t, s, a.admin, "Panel", func(k *keys.APIKey) {
			k.Description, k.Scopes, k.Permissions, k.ExpiresAt = "lobby", []string{"systems.read", "zones"}, keys.PermissionAdmin, &exp
		})
		var seen []keys.Change
		var mu sync.Mutex
		s.OnChange(func(c keys.Change) { mu.Lock(); seen = append(seen, c); mu.Unlock() })

		start := time.Now()
		r := rotate(t, s, old.ID, time.Hour)
		end := time.Now()
		id, _, ok := keys.ParseKey(string(r.Plaintext))
		if !ok || id != r.Key.ID || id == old.ID {
			t.Fatalf("new plaintext parses to %q (ok %v), new key %s, old key %s", id, ok, r.Key.ID, old.ID)
		}
		want := *old
		want.ID, want.RotatedFrom = r.Key.ID, old.ID
		want.CreatedAt, want.UpdatedAt = r.Key.CreatedAt, r.Key.CreatedAt
		if diff := cmp.Diff(&want, r.Key); diff != "" || r.Key.CreatedAt < start.Unix() {
			t.Errorf("new key (-want +got):\n%s", diff)
		}
		got, err := s.GetKey(ctx, r.Key.ID)
		mustNot(t, "GetKey(new)", err)
		if diff := cmp.Diff(r.Key, got); diff != "" {
			t.Errorf("GetKey(new) (-returned +stored):\n%s", diff)
		}
		stored, err := s.GetKey(ctx, old.ID)
		mustNot(t, "GetKey(old)", err)
		if diff := cmp.Diff(r.Old, stored); diff != "" {
			t.Errorf("GetKey(old) (-returned +stored):\n%s", diff)
		}
		if stored.ReplacedBy != r.Key.ID || stored.RotatedFrom != "" || stored.ExpiresAt == nil ||
			*stored.ExpiresAt < start.Add(time.Hour).Unix() || *stored.ExpiresAt > end.Add(time.Hour).Unix() {
			t.Errorf("old key after rotation: replaced_by %q, rotated_from %q, expires_at %v; want replaced_by %s, expiry now+1h",
				stored.ReplacedBy, stored.RotatedFrom, stored.ExpiresAt, r.Key.ID)
		}
		stored.ExpiresAt, stored.ReplacedBy, stored.UpdatedAt = old.ExpiresAt, "", old.UpdatedAt
		if diff := cmp.Diff(old, stored); diff != "" {
			t.Errorf("old key: fields other than expires_at, replaced_by, updated_at changed (-before +after):\n%s", diff)
		}

		// Both work during the overlap; after it only the new one, until its own expiry.
		authenticates(t, s, old.ID, oldPT)
		authenticates(t, s, r.Key.ID, string(r.Plaintext))
		later := end.Add(time.Hour + time.Second)
		authenticatesAt(t, s, "old key after the overlap", oldPT, later, keys.ErrExpiredKey)
		authenticatesAt(t, s, "new key after the overlap", string(r.Plaintext), later, nil)
		authenticatesAt(t, s, "new key after its expiry", string(r.Plaintext), time.Unix(exp, 0), keys.ErrExpiredKey)

		// The name now belongs to the new key; both are listed.
		_, err = s.CreateKey(ctx, &keys.APIKey{Name: "panel", UserID: a.user.ID})
		wantErr(t, "CreateKey with the rotated key's name", err, keys.EUNPROCESSABLE, failure{"name", keys.ReasonTaken})
		list, total, err := s.ListKeys(ctx, keys.KeyFilter{AuthorityID: a.domain.ID})
		mustNot(t, "ListKeys", err)
		if total != 2 {
			t.Errorf("ListKeys = %v, want the old and the new key", keyIDs(list))
		}
		wantCounts(t, s, 1, 2, 2)
		mu.Lock()
		defer mu.Unlock()
		wantSeen := []keys.Change{{Kind: keys.KindKey, ID: old.ID}, {Kind: keys.KindKey, ID: r.Key.ID}}
		if diff := cmp.Diff(wantSeen, seen, sortChanges); diff != "" {
			t.Errorf("OnChange (-want +got):\n%s", diff)
		}
	}},
	{"OverlapNeverPastTheOwnExpiry", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		exp := time.Now().Add(10 * time.Minute).Unix()
		old, oldPT := mustKey(t, s, a.user, "expiring", func(k *keys.APIKey) { k.ExpiresAt = &exp })
		r := rotate(t, s, old.ID, keys.DefaultOverlap)
		if r.Old.ExpiresAt == nil || *r.Old.ExpiresAt != exp {
			t.Errorf("old key's expires_at = %v, want its own %d (sooner than the overlap)", r.Old.ExpiresAt, exp)
		}
		if r.Key.ExpiresAt == nil || *r.Key.ExpiresAt != exp {
			t.Errorf("new key's expires_at = %v, want the old key's %d", r.Key.ExpiresAt, exp)
		}
		authenticates(t, s, old.ID, oldPT)
		authenticatesAt(t, s, "old key at its expiry", oldPT, time.Unix(exp, 0), keys.ErrExpiredKey)
	}},
	{"OverlapZeroEndsTheOldKeyAtOnce", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		old, oldPT := mustKey(t, s, a.user, "now")
		r := rotate(t, s, old.ID, 0)
		authenticatesAt(t, s, "old key", oldPT, time.Now(), keys.ErrExpiredKey)
		authenticates(t, s, r.Key.ID, string(r.Plaintext))
		if got := keys.KeyState(r.Old, time.Now()); got != keys.StateExpired {
			t.Errorf("old key's state = %s, want %s", got, keys.StateExpired)
		}
	}},
	{"Refused", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, _ := mustKey(t, s, a.admin, "k", func(k *keys.APIKey) { k.Permissions = keys.PermissionAdmin })
		replaced, _ := mustKey(t, s, a.user, "replaced")
		rotate(t, s, replaced.ID, time.Hour)
		before := snap(t, s)
		errCheck := keys.Errorf(keys.EFORBIDDEN, "no")
		for _, tt := range []struct {
			name string
			id   string
			r    keys.KeyRotation
			code string
			fs   []failure
		}{
			{"unknown key", "0123456789abcdef0123456789abcdef", keys.KeyRotation{Overlap: time.Hour}, keys.ENOTFOUND, nil},
			{"negative overlap", k.ID, keys.KeyRotation{Overlap: -time.Second}, keys.EUNPROCESSABLE, []failure{{"overlap", keys.ReasonOverlap}}},
			{"overlap too long", k.ID, keys.KeyRotation{Overlap: keys.MaxOverlap + time.Second}, keys.EUNPROCESSABLE, []failure{{"overlap", keys.ReasonOverlap}}},
			{"already replaced", replaced.ID, keys.KeyRotation{Overlap: time.Hour}, keys.ECONFLICT, nil},
			{"check refuses", k.ID, keys.KeyRotation{Overlap: time.Hour, Check: func(*keys.APIKey) error { return errCheck }}, keys.EFORBIDDEN, nil},
		} {
			_, err := s.RotateKey(ctx, tt.id, tt.r)
			wantErr(t, tt.name, err, tt.code, tt.fs...)
		}
		unchanged(t, s, before)

		// A key above its since-demoted user's level cannot be copied: lower it first.
		_, err := s.ModifyUser(ctx, a.admin.ID, func(u *keys.User) error { u.SysAdmin = false; return nil })
		mustNot(t, "ModifyUser", err)
		before = snap(t, s)
		_, err = s.RotateKey(ctx, k.ID, keys.KeyRotation{Overlap: time.Hour})
		wantErr(t, "rotation above the user's level", err, keys.EUNPROCESSABLE, failure{"permissions", ""})
		unchanged(t, s, before)
	}},
	{"CheckSeesTheOldKey", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		old, _ := mustKey(t, s, a.user, "k", func(k *keys.APIKey) { k.Scopes = []string{"zones"} })
		var seen *keys.APIKey
		_, err := s.RotateKey(t.Context(), old.ID, keys.KeyRotation{Overlap: time.Hour, Check: func(k *keys.APIKey) error {
			seen = k
			return nil
		}})
		mustNot(t, "RotateKey", err)
		if diff := cmp.Diff(old, seen); diff != "" {
			t.Errorf("Check saw (-stored +seen):\n%s", diff)
		}
	}},
	{"AReplacedKeyIsNotRenamedNorLengthened", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		old, _ := mustKey(t, s, a.user, "k")
		r := rotate(t, s, old.ID, time.Hour)
		later := *r.Old.ExpiresAt + 60
		sooner := *r.Old.ExpiresAt - 60
		for _, tt := range []struct {
			name string
			u    keys.KeyUpdate
			code string
		}{
			{"rename", keys.KeyUpdate{Name: ptr("other")}, keys.ECONFLICT},
			{"never expire", keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true}}, keys.ECONFLICT},
			{"expire later", keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true, Value: &later}}, keys.ECONFLICT},
			{"expire sooner", keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true, Value: &sooner}}, ""},
			{"describe", keys.KeyUpdate{Description: ptr("old")}, ""},
			{"same name in another case", keys.KeyUpdate{Name: ptr("K")}, ""},
		} {
			_, err := s.UpdateKey(ctx, old.ID, tt.u)
			wantErr(t, tt.name, err, tt.code)
		}
		// The new key keeps its name and can be renamed as any key.
		_, err := s.UpdateKey(ctx, r.Key.ID, keys.KeyUpdate{Name: ptr("renamed")})
		mustNot(t, "rename the new key", err)
		mustKey(t, s, a.user, "k2")
	}},
	{"DeletesKeepTheNameWithTheLiveKey", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		// Deleting the old key leaves the name taken by the new one.
		old, oldPT := mustKey(t, s, a.user, "first")
		r := rotate(t, s, old.ID, time.Hour)
		mustNot(t, "DeleteKey(old)", s.DeleteKey(ctx, old.ID))
		gone(t, s, old.ID, oldPT)
		authenticates(t, s, r.Key.ID, string(r.Plaintext))
		_, err := s.CreateKey(ctx, &keys.APIKey{Name: "first", UserID: a.user.ID})
		wantErr(t, "CreateKey with the name of the live key", err, keys.EUNPROCESSABLE, failure{"name", keys.ReasonTaken})

		// Deleting the new key frees the name even while the old one overlaps.
		old2, _ := mustKey(t, s, a.user, "second")
		r2 := rotate(t, s, old2.ID, time.Hour)
		mustNot(t, "DeleteKey(new)", s.DeleteKey(ctx, r2.Key.ID))
		again, _ := mustKey(t, s, a.user, "second")
		// And deleting the old one then leaves the new holder's name alone.
		mustNot(t, "DeleteKey(old2)", s.DeleteKey(ctx, old2.ID))
		_, err = s.CreateKey(ctx, &keys.APIKey{Name: "second", UserID: a.user.ID})
		wantErr(t, "CreateKey with the name of "+again.ID, err, keys.EUNPROCESSABLE, failure{"name", keys.ReasonTaken})
	}},
	{"AChainOfRotations", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		k1, pt1 := mustKey(t, s, a.user, "chain")
		r2 := rotate(t, s, k1.ID, time.Hour)
		r3 := rotate(t, s, r2.Key.ID, time.Hour)
		if r3.Key.RotatedFrom != r2.Key.ID || r3.Old.ReplacedBy != r3.Key.ID || r3.Old.RotatedFrom != k1.ID {
			t.Errorf("chain: third rotated_from %q, second replaced_by %q rotated_from %q", r3.Key.RotatedFrom, r3.Old.ReplacedBy, r3.Old.RotatedFrom)
		}
		for _, pt := range []string{pt1, string(r2.Plaintext), string(r3.Plaintext)} {
			authenticatesAt(t, s, "a key of the chain during its overlap", pt, time.Now(), nil)
		}
		// A user delete takes the whole chain.
		mustNot(t, "DeleteUser", s.DeleteUser(t.Context(), a.user.ID))
		gone(t, s, k1.ID, pt1)
		gone(t, s, r3.Key.ID, string(r3.Plaintext))
		wantCounts(t, s, 1, 1, 0)
	}},
	{"ConcurrentRotationsOneWins", func(t *testing.T, s keys.Service) {
		a := mustSite(t, s, "a.example")
		old, _ := mustKey(t, s, a.user, "contested")
		const n = 8
		errs := make([]error, n)
		race(n, func(i int) {
			errs[i] = retryConflictsUnlessReplaced(func() error {
				_, err := s.RotateKey(t.Context(), old.ID, keys.KeyRotation{Overlap: time.Hour})
				return err
			})
		})
		wins := 0
		for _, err := range errs {
			switch keys.ErrorCode(err) {
			case "":
				wins++
			case keys.ECONFLICT:
			default:
				t.Errorf("concurrent RotateKey: %v", err)
			}
		}
		if wins != 1 {
			t.Errorf("%d of %d concurrent rotations of one key succeeded, want 1", wins, n)
		}
		wantCounts(t, s, 1, 2, 2)
	}},
}

// retryConflictsUnlessReplaced is retryConflicts that stops at the ECONFLICT of a key already
// replaced (the answer a losing rotation must end with).
func retryConflictsUnlessReplaced(write func() error) error {
	var err error
	for range 1000 {
		err = write()
		if keys.ErrorCode(err) != keys.ECONFLICT || isReplaced(err) {
			return err
		}
	}
	return err
}

func isReplaced(err error) bool {
	return keys.ErrorCode(err) == keys.ECONFLICT && strings.Contains(keys.ErrorMessage(err), "was replaced")
}

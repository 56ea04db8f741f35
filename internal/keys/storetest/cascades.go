package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var cascadeTests = []test{
	{"DeleteUserDeletesItsKeys", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k1, pt1 := mustKey(t, s, a.user, "one")
		k2, pt2 := mustKey(t, s, a.user, "two")
		kept, keptPT := mustKey(t, s, a.admin, "kept")
		mustNot(t, "DeleteUser", s.DeleteUser(ctx, a.user.ID))
		_, err := s.GetUser(ctx, a.user.ID)
		wantErr(t, "GetUser of a deleted user", err, keys.ENOTFOUND)
		gone(t, s, k1.ID, pt1)
		gone(t, s, k2.ID, pt2)
		authenticates(t, s, kept.ID, keptPT)
		list, total, err := s.ListKeys(ctx, keys.KeyFilter{AuthorityID: a.domain.ID})
		mustNot(t, "ListKeys", err)
		if total != 1 || list[0].ID != kept.ID {
			t.Errorf("ListKeys after the delete = %v, want only %s", keyIDs(list), kept.ID)
		}
		wantCounts(t, s, 1, 1, 1)
		// The deleted keys' names are free again.
		mustKey(t, s, a.admin, "one")
	}},
	{"DeleteDomainDeletesUsersAndKeys", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a, b := mustSite(t, s, "a.example"), mustSite(t, s, "b.example")
		k1, pt1 := mustKey(t, s, a.user, "one")
		k2, pt2 := mustKey(t, s, a.admin, "two")
		kept, keptPT := mustKey(t, s, b.user, "one")
		mustNot(t, "DeleteDomain", s.DeleteDomain(ctx, a.domain.ID))
		_, err := s.GetDomain(ctx, a.domain.ID)
		wantErr(t, "GetDomain of a deleted domain", err, keys.ENOTFOUND)
		_, err = s.DomainByHost(ctx, "a.example")
		wantErr(t, "DomainByHost of a deleted domain", err, keys.ENOTFOUND)
		for _, u := range []*keys.User{a.user, a.admin} {
			_, err := s.GetUser(ctx, u.ID)
			wantErr(t, "GetUser of a deleted domain's user", err, keys.ENOTFOUND)
		}
		gone(t, s, k1.ID, pt1)
		gone(t, s, k2.ID, pt2)
		authenticates(t, s, kept.ID, keptPT)
		users, err := s.ListUsers(ctx, a.domain.ID)
		if err != nil || len(users) != 0 {
			t.Errorf("ListUsers of a deleted domain = %v, %v", users, err)
		}
		wantCounts(t, s, 1, 2, 1)
		// Host and key names are free again.
		again := mustSite(t, s, "a.example")
		mustKey(t, s, again.user, "one")
	}},
	{"NoKeyOutlivesItsUser", func(t *testing.T, s keys.Service) {
		// Keys created while their user is being deleted must not survive it: a create either
		// commits before the delete (and the cascade takes it) or fails.
		a := mustSite(t, s, "a.example")
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 4 {
			wg.Go(func() {
				<-start
				for i := range 10 {
					_, err := s.CreateKey(t.Context(), &keys.APIKey{Name: fmt.Sprintf("%d-%d", w, i), UserID: a.user.ID})
					if code := keys.ErrorCode(err); code != "" && code != keys.EUNPROCESSABLE && code != keys.ECONFLICT {
						t.Errorf("CreateKey: %v", err)
					}
				}
			})
		}
		wg.Go(func() {
			<-start
			if err := retryConflicts(func() error { return s.DeleteUser(t.Context(), a.user.ID) }); err != nil {
				t.Errorf("DeleteUser: %v", err)
			}
		})
		close(start)
		wg.Wait()
		list, total, err := s.ListKeys(t.Context(), keys.KeyFilter{})
		mustNot(t, "ListKeys", err)
		if total != 0 {
			t.Errorf("%d keys outlived their user: %v", total, keyIDs(list))
		}
		wantCounts(t, s, 1, 1, 0)
	}},
}

package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// rounds is how many times each concurrent writer writes its field.
const rounds = 20

// patchConcurrently runs one goroutine per field writer, each writing its field rounds times
// (retrying a write that returns ECONFLICT, as Service asks), all released together.
func patchConcurrently(t *testing.T, writers []func(i int) error) {
	t.Helper()
	race(len(writers), func(w int) {
		for i := range rounds {
			if err := retryConflicts(func() error { return writers[w](i) }); err != nil {
				t.Errorf("writer %d, round %d: %v", w, i, err)
				return
			}
		}
	})
}

var concurrencyTests = []test{
	{"DomainPatchesLoseNothing", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		host := func(i int) string { return fmt.Sprintf("h%d.example.com", i) }
		patch := func(f func(*keys.Domain)) error {
			_, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { f(cur); return nil })
			return err
		}
		patchConcurrently(t, []func(int) error{
			func(i int) error { return patch(func(d *keys.Domain) { d.Name = fmt.Sprint("name ", i) }) },
			func(i int) error {
				return patch(func(d *keys.Domain) { d.Description = fmt.Sprint("description ", i) })
			},
			func(i int) error { return patch(func(d *keys.Domain) { d.Domain = host(i) }) },
		})
		got, err := s.GetDomain(ctx, d.ID)
		mustNot(t, "GetDomain", err)
		last := rounds - 1
		want := keys.Domain{ID: d.ID, Name: fmt.Sprint("name ", last), Description: fmt.Sprint("description ", last),
			Domain: host(last), CreatedAt: d.CreatedAt, UpdatedAt: got.UpdatedAt}
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("after concurrent patches (-every field's last write +stored):\n%s", diff)
		}
		// The host index follows the record: only the last host resolves.
		for i := range rounds {
			byHost, err := s.DomainByHost(ctx, host(i))
			switch {
			case i == last && (err != nil || byHost.ID != d.ID):
				t.Errorf("DomainByHost(%s) = %v, %v", host(i), byHost, err)
			case i != last && keys.ErrorCode(err) != keys.ENOTFOUND:
				t.Errorf("DomainByHost(%s), an earlier host: %v, want ENOTFOUND", host(i), err)
			}
		}
	}},
	{"UserPatchesLoseNothing", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		u := a.user
		patch := func(f func(*keys.User)) error {
			_, err := s.ModifyUser(ctx, u.ID, func(cur *keys.User) error { f(cur); return nil })
			return err
		}
		patchConcurrently(t, []func(int) error{
			func(i int) error { return patch(func(u *keys.User) { u.Name = fmt.Sprint("name ", i) }) },
			func(i int) error { return patch(func(u *keys.User) { u.Email = fmt.Sprintf("u%d@a.example", i) }) },
			func(i int) error { return patch(func(u *keys.User) { u.SysAdmin = i%2 == 0 }) },
			func(i int) error { return patch(func(u *keys.User) { u.Support = i%2 == 1 }) },
			func(i int) error { return patch(func(u *keys.User) { u.Groups = []string{fmt.Sprint("g", i)} }) },
		})
		got, err := s.GetUser(ctx, u.ID)
		mustNot(t, "GetUser", err)
		last := rounds - 1
		want := keys.User{ID: u.ID, AuthorityID: u.AuthorityID, Name: fmt.Sprint("name ", last),
			Email: fmt.Sprintf("u%d@a.example", last), SysAdmin: last%2 == 0, Support: last%2 == 1,
			Groups: []string{fmt.Sprint("g", last)}, CreatedAt: u.CreatedAt, UpdatedAt: got.UpdatedAt}
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("after concurrent patches (-every field's last write +stored):\n%s", diff)
		}
	}},
	{"KeyPatchesLoseNothing", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		a := mustSite(t, s, "a.example")
		k, pt := mustKey(t, s, a.admin, "Main")
		base := time.Now().Add(time.Hour).Unix()
		name := func(i int) string { return fmt.Sprint("name ", i) }
		perm := func(i int) keys.Permission { return []keys.Permission{keys.PermissionUser, keys.PermissionAdmin}[i%2] }
		update := func(u keys.KeyUpdate) error { _, err := s.UpdateKey(ctx, k.ID, u); return err }
		patchConcurrently(t, []func(int) error{
			func(i int) error { return update(keys.KeyUpdate{Name: ptr(name(i))}) },
			func(i int) error { return update(keys.KeyUpdate{Description: ptr(fmt.Sprint("description ", i))}) },
			func(i int) error { return update(keys.KeyUpdate{Scopes: ptr([]string{fmt.Sprint("s", i)})}) },
			func(i int) error { return update(keys.KeyUpdate{Permissions: ptr(perm(i))}) },
			func(i int) error {
				return update(keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true, Value: ptr(base + int64(i))}})
			},
		})
		got, err := s.GetKey(ctx, k.ID)
		mustNot(t, "GetKey", err)
		last := rounds - 1
		want := *k
		want.Name, want.Description, want.Scopes = name(last), fmt.Sprint("description ", last), []string{fmt.Sprint("s", last)}
		want.Permissions, want.ExpiresAt, want.UpdatedAt = perm(last), ptr(base+int64(last)), got.UpdatedAt
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("after concurrent updates (-every field's last write +stored):\n%s", diff)
		}
		authenticates(t, s, k.ID, pt)
		// The name index follows the record: the last name is taken, the earlier ones free.
		_, err = s.CreateKey(ctx, &keys.APIKey{Name: name(last), UserID: a.user.ID})
		wantErr(t, "CreateKey with the last name", err, keys.EUNPROCESSABLE, failure{"name", "has already been taken"})
		mustKey(t, s, a.user, name(0))
	}},
	{"ConflictIsRetriedThenECONFLICT", func(t *testing.T, s keys.Service) {
		// A write whose record keeps changing under it is retried with the new record, and
		// gives up with ECONFLICT, writing nothing, if it never gets through. The interfering
		// write is made from inside change, so that it always lands while the write is in
		// progress (a store with optimistic concurrency, as Badger and etcd have, allows it).
		ctx := t.Context()
		d := mustDomain(t, s, "Main", "example.com")
		calls := 0
		_, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error {
			calls++
			if cur.Description != fmt.Sprint("interloper ", calls-1) && calls > 1 {
				t.Errorf("attempt %d sees description %q, want the interloper's latest write", calls, cur.Description)
			}
			_, err := s.ModifyDomain(ctx, d.ID, func(o *keys.Domain) error { o.Description = fmt.Sprint("interloper ", calls); return nil })
			if err != nil {
				t.Errorf("interfering write: %v", err)
			}
			cur.Name = "mine"
			return nil
		})
		wantErr(t, "ModifyDomain that always loses", err, keys.ECONFLICT)
		if calls < 2 {
			t.Errorf("change called %d times; want the write retried before it gives up", calls)
		}
		got, err := s.GetDomain(ctx, d.ID)
		mustNot(t, "GetDomain", err)
		if got.Name != "Main" || got.Description != fmt.Sprint("interloper ", calls) {
			t.Errorf("stored %q / %q; want the interloper's writes only", got.Name, got.Description)
		}
	}},
}

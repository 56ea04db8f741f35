package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestWritesRecheckTheCaller: a write made for a caller re-reads the caller's key and user in
// its transaction: it is refused, and writes nothing, once the key is deleted or expired, or
// its scopes, permissions, expiry or allow-list, or its user's flags, changed since the caller
// was read. A change of anything else (a name, last_used_at, a rate limit) does not refuse it, and a write without a
// caller is not rechecked.
func TestWritesRecheckTheCaller(t *testing.T) {
	var now atomic.Int64
	now.Store(testNow.Unix())
	s, err := OpenInMemory(WithClock(func() time.Time { return time.Unix(now.Load(), 0) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := seed(t, s, "example.com")
	ctx := t.Context()
	exp := testNow.Unix() + 3600

	// callerFor creates an admin key for the admin user and returns a context carrying it as
	// the authorization middleware would, with its key and user as read now.
	n := 0
	callerFor := func(t *testing.T) (context.Context, *keys.APIKey) {
		t.Helper()
		n++
		k := &keys.APIKey{Name: fmt.Sprintf("caller %d", n), UserID: f.admin.ID, Scopes: []string{"public"}, Permissions: keys.PermissionAdmin, ExpiresAt: &exp}
		mustCreateKey(t, s, k)
		u, err := s.GetUser(ctx, f.admin.ID)
		if err != nil {
			t.Fatal(err)
		}
		return keys.ContextWithCaller(ctx, &keys.Caller{Key: k, User: u, Permissions: keys.PermissionAdmin}), k
	}
	// write is a write a caller could make: a new key of the plain user.
	write := func(ctx context.Context) error {
		_, err := s.CreateKey(ctx, &keys.APIKey{Name: "new " + keys.NewUserID(), UserID: f.user.ID, Scopes: []string{"public"}})
		return err
	}
	restoreAdmin := func(t *testing.T) {
		t.Helper()
		if _, err := s.ModifyUser(ctx, f.admin.ID, func(u *keys.User) error { u.SysAdmin, u.Support = true, false; return nil }); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name   string
		change func(t *testing.T, k *keys.APIKey) error
		want   error // nil: the write goes through
	}{
		{"nothing changed", func(*testing.T, *keys.APIKey) error { return nil }, nil},
		{"key renamed", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: ptr("renamed " + k.ID)})
			return err
		}, nil},
		{"key used", func(t *testing.T, k *keys.APIKey) error {
			return s.RecordUse(ctx, map[string]int64{k.ID: testNow.Unix()})
		}, nil},
		{"user renamed", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.ModifyUser(ctx, f.admin.ID, func(u *keys.User) error { u.Name = "Admin " + k.ID; return nil })
			return err
		}, nil},
		{"key deleted", func(t *testing.T, k *keys.APIKey) error { return s.DeleteKey(ctx, k.ID) }, keys.ErrUnknownKey},
		{"key expired", func(t *testing.T, k *keys.APIKey) error { now.Store(exp); return nil }, keys.ErrExpiredKey},
		{"key narrowed", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Scopes: &[]string{"systems"}})
			return err
		}, keys.ErrCallerChanged},
		{"key lowered", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Permissions: ptr(keys.PermissionSupport)})
			return err
		}, keys.ErrCallerChanged},
		{"key re-dated", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true}})
			return err
		}, keys.ErrCallerChanged},
		{"key confined to a network", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{AllowedCIDRs: keys.Some([]string{"192.0.2.0/24"})})
			return err
		}, keys.ErrCallerChanged},
		{"key given a rate limit", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{RateLimit: keys.Some(keys.RateLimit{Rate: 1, Burst: 1})})
			return err
		}, nil},
		{"user demoted", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.ModifyUser(ctx, f.admin.ID, func(u *keys.User) error { u.SysAdmin = false; return nil })
			return err
		}, keys.ErrCallerChanged},
		{"user promoted", func(t *testing.T, k *keys.APIKey) error {
			_, err := s.ModifyUser(ctx, f.admin.ID, func(u *keys.User) error { u.Support = true; return nil })
			return err
		}, keys.ErrCallerChanged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer now.Store(testNow.Unix())
			defer restoreAdmin(t)
			cctx, k := callerFor(t)
			if err := tt.change(t, k); err != nil {
				t.Fatal(err)
			}
			_, _, before := s.Counts(ctx)
			err := write(cctx)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("write: %v, want none", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("write: %v (code %s), want %v", err, keys.ErrorCode(err), tt.want)
			}
			if _, _, after := s.Counts(ctx); after != before {
				t.Errorf("keys %d -> %d: the refused write stored a key", before, after)
			}
			// Every kind of write is rechecked, deletes included; one without a caller is not.
			if err := s.DeleteUser(cctx, f.user.ID); !errors.Is(err, tt.want) {
				t.Errorf("DeleteUser: %v, want %v", err, tt.want)
			}
			if err := write(ctx); err != nil {
				t.Errorf("a write without a caller: %v", err)
			}
		})
	}
	t.Run("a caller without its user", func(t *testing.T) {
		cctx, k := callerFor(t)
		cctx = keys.ContextWithCaller(cctx, &keys.Caller{Key: k, Permissions: keys.PermissionAdmin})
		if err := write(cctx); !errors.Is(err, keys.ErrCallerChanged) {
			t.Errorf("write: %v, want %v", err, keys.ErrCallerChanged)
		}
	})
}

package badgerstore

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/diskspace"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestFixedSpaceMargin pins the arithmetic docs/operations.md states.
func TestFixedSpaceMargin(t *testing.T) {
	if fixedSpaceMargin != 11_114_905 {
		t.Errorf("fixedSpaceMargin %d; update docs/operations.md#disk-space with the new figure", fixedSpaceMargin)
	}
}

// TestWritesRefusedOnFullDisk runs a store on disk whose free space the test sets: below the
// margin every write is EINSUFFICIENT (a 507 naming the folder and both figures) and leaves the
// store unchanged, reads go on, held key uses are written once space is back.
func TestWritesRefusedOnFullDisk(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	var free atomic.Uint64
	free.Store(1 << 40)
	s, err := Open(dir, withFreeSpace(func(string) (uint64, error) { return free.Load(), nil }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	if err := s.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u := &keys.User{AuthorityID: d.ID, Name: "U", Email: "u@acme.example.com"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	k := &keys.APIKey{Name: "k", UserID: u.ID}
	secret, err := s.CreateKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	usage := keys.NewUsageRecorder(s, nil)

	need := s.spaceNeed()
	if need < fixedSpaceMargin {
		t.Fatalf("spaceNeed %d is below the fixed margin %d", need, fixedSpaceMargin)
	}
	free.Store(need - 1)
	writes := map[string]func() error{
		"create domain": func() error {
			return s.CreateDomain(ctx, &keys.Domain{Name: "B", Domain: "b.example.com"})
		},
		"create user": func() error {
			return s.CreateUser(ctx, &keys.User{AuthorityID: d.ID, Name: "V", Email: "v@acme.example.com"})
		},
		"create key": func() error { _, err := s.CreateKey(ctx, &keys.APIKey{Name: "k2", UserID: u.ID}); return err },
		"update key": func() error {
			name := "renamed"
			_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: &name})
			return err
		},
		"delete key":  func() error { return s.DeleteKey(ctx, k.ID) },
		"delete user": func() error { return s.DeleteUser(ctx, u.ID) },
		"record use":  func() error { return s.RecordUse(ctx, map[string]int64{k.ID: 1}) },
	}
	for name, write := range writes {
		err := write()
		// EINSUFFICIENT is a 507 (internal/server errors_test.go).
		if keys.ErrorCode(err) != keys.EINSUFFICIENT {
			t.Errorf("%s on a full disk: %v (code %q), want EINSUFFICIENT", name, err, keys.ErrorCode(err))
			continue
		}
		if want := "insufficient storage: " + dir + " has "; !strings.HasPrefix(keys.ErrorMessage(err), want) {
			t.Errorf("%s: message %q, want it to start %q", name, keys.ErrorMessage(err), want)
		}
	}

	// Reads, and so decisions, go on; nothing refused was written.
	got, err := s.Authenticate(ctx, string(secret), time.Now())
	if err != nil || got.Key.Name != "k" {
		t.Fatalf("authenticate on a full disk: %+v, %v", got, err)
	}
	if n := len(must(s.ListDomains(ctx))); n != 1 {
		t.Errorf("%d domains after a refused create, want 1", n)
	}

	// Key uses are held while the disk is full, and written once space is back.
	at := time.Unix(2_000_000_000, 0)
	usage.Record(k.ID, at)
	if err := usage.Flush(ctx); keys.ErrorCode(err) != keys.EINSUFFICIENT {
		t.Fatalf("flush on a full disk: %v, want EINSUFFICIENT", err)
	}
	if usage.Pending()[k.ID] != at.Unix() {
		t.Fatalf("the use was not held: %v", usage.Pending())
	}
	free.Store(need + 1<<20)
	if err := usage.Flush(ctx); err != nil {
		t.Fatalf("flush with space back: %v", err)
	}
	if k2, _ := s.GetKey(ctx, k.ID); k2.LastUsedAt == nil || *k2.LastUsedAt != at.Unix() {
		t.Errorf("last_used_at after space came back: %v, want %d", k2.LastUsedAt, at.Unix())
	}
	if err := writes["create domain"](); err != nil {
		t.Errorf("write with space back: %v", err)
	}
}

// TestOpenRefusesFullDisk: Open measures before it opens Badger and names the folder, the
// free space and the need; nothing is created in the folder.
func TestOpenRefusesFullDisk(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, withFreeSpace(func(string) (uint64, error) { return fixedSpaceMargin - 1, nil }))
	var low *diskspace.LowError
	if !errors.As(err, &low) || low.Need != fixedSpaceMargin || low.Free != fixedSpaceMargin-1 {
		t.Fatalf("Open with too little space: %v, want a *diskspace.LowError", err)
	}
	if !strings.Contains(err.Error(), "insufficient storage: "+dir) {
		t.Errorf("error %q does not name the folder", err)
	}
	// Once there is room, the same folder opens.
	s, err := Open(dir, withFreeSpace(func(string) (uint64, error) { return fixedSpaceMargin, nil }))
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

package badgerstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestImportKeys imports keys in more than one chunk and checks that they authenticate, are
// counted, are listed per domain and fire the change hooks.
func TestImportKeys(t *testing.T) {
	ctx := t.Context()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	if err := s.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u := &keys.User{AuthorityID: d.ID, Name: "Panel", Email: "p@acme.example.com"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	changes := 0
	s.OnChange(func(keys.Change) { changes++ })
	const n = importChunk + 7
	var plain []keys.Secret
	seq := func(yield func(keys.BulkKey) bool) {
		for i := range n {
			p, id, hash, err := keys.Generate()
			if err != nil {
				t.Fatal(err)
			}
			if i%1000 == 0 {
				plain = append(plain, p)
			}
			k := keys.APIKey{ID: id, Name: fmt.Sprintf("key %d", i), UserID: u.ID, Scopes: []string{"systems.READ"}}
			if !yield(keys.BulkKey{Key: k, Hash: hash}) {
				return
			}
		}
	}
	got, err := s.ImportKeys(ctx, seq)
	if err != nil || got != n {
		t.Fatalf("ImportKeys = %d, %v; want %d", got, err, n)
	}
	if changes != n {
		t.Errorf("change hooks called %d times, want %d", changes, n)
	}
	if _, _, k := s.Counts(ctx); k != n {
		t.Errorf("Counts keys = %d, want %d", k, n)
	}
	for _, p := range plain {
		res, err := s.Authenticate(ctx, string(p), time.Now())
		if err != nil {
			t.Fatalf("Authenticate(imported): %v", err)
		}
		if res.Key.AuthorityID != d.ID || res.Key.Permissions != keys.PermissionUser || res.Key.Scopes[0] != "systems.read" {
			t.Errorf("imported key = %+v", res.Key)
		}
	}
	_, total, err := s.ListKeys(ctx, keys.KeyFilter{AuthorityID: d.ID, Limit: 1})
	if err != nil || total != n {
		t.Errorf("ListKeys total = %d, %v; want %d", total, err, n)
	}
	bad := func(yield func(keys.BulkKey) bool) {
		yield(keys.BulkKey{Key: keys.APIKey{ID: "x", Name: "x", UserID: u.ID}})
	}
	if _, err := s.ImportKeys(context.Background(), bad); keys.ErrorCode(err) != keys.EINVALID {
		t.Errorf("ImportKeys(bad id) = %v, want EINVALID", err)
	}
}

// TestCountsSurviveReopen checks that the counts checkpointed by Close are the counts Open
// finds, and that an Open without a checkpoint counts by scanning.
func TestCountsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	if err := s.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u := &keys.User{AuthorityID: d.ID, Name: "Panel", Email: "p@acme.example.com"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateKey(ctx, &keys.APIKey{Name: "k", UserID: u.ID}); err != nil {
		t.Fatal(err)
	}
	for i, reopen := range []func() (*Store, error){
		func() (*Store, error) { return Open(dir) }, // checkpoint written by Close
		func() (*Store, error) { // no checkpoint: as after a crash
			s, err := Open(dir)
			if err != nil {
				return nil, err
			}
			if err := s.db.DropPrefix(kCounts); err != nil {
				return nil, err
			}
			s.nKeys.Store(0)
			if err := s.db.Close(); err != nil {
				return nil, err
			}
			return Open(dir)
		},
	} {
		if i == 0 {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		s2, err := reopen()
		if err != nil {
			t.Fatal(err)
		}
		if dd, uu, kk := s2.Counts(ctx); dd != 1 || uu != 1 || kk != 1 {
			t.Errorf("reopen %d: Counts = %d, %d, %d; want 1, 1, 1", i, dd, uu, kk)
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

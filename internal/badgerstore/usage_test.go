package badgerstore

import (
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

func TestUsageRecorder(t *testing.T) {
	ctx := t.Context()
	s, err := OpenInMemory()
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
	a, b := &keys.APIKey{Name: "a", UserID: u.ID}, &keys.APIKey{Name: "b", UserID: u.ID}
	for _, k := range []*keys.APIKey{a, b} {
		if _, err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	changes := 0
	s.OnChange(func(keys.Change) { changes++ })

	r := keys.NewUsageRecorder(s, nil)
	t1, t2 := time.Unix(2_000_000_000, 0), time.Unix(2_000_000_100, 0)
	r.Record(a.ID, t2)
	r.Record(a.ID, t1) // an older use does not move last_used_at back
	r.Record(b.ID, t1)
	r.Record("0123456789abcdef0123456789abcdef", t1) // a key deleted before the flush is skipped
	if got := r.Pending()[a.ID]; got != t2.Unix() {
		t.Fatalf("pending use of a: %d, want %d", got, t2.Unix())
	}
	if err := s.DeleteKey(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	changes = 0
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetKey(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedAt == nil || *got.LastUsedAt != t2.Unix() {
		t.Errorf("last_used_at %v, want %d", got.LastUsedAt, t2.Unix())
	}
	if _, err := s.GetKey(ctx, b.ID); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Errorf("the deleted key came back: %v", err)
	}
	if changes != 0 {
		t.Errorf("recording uses fired %d change hooks; caches would be emptied for nothing", changes)
	}
	// A later flush with an older time keeps the newer stored value.
	if err := s.RecordUse(ctx, map[string]int64{a.ID: t1.Unix()}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetKey(ctx, a.ID); *got.LastUsedAt != t2.Unix() {
		t.Errorf("last_used_at moved back to %d", *got.LastUsedAt)
	}
}

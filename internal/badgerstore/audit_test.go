package badgerstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// BenchmarkListAudit measures a listing of a log of 10,000 records (in memory): a filter by
// target, whose value every record holds (each is decoded) or one record holds (only that one
// is); the newest page (the keys counted, 100 records decoded); and a time range holding no
// record (the cost of the seek).
func BenchmarkListAudit(b *testing.B) {
	s := newStore(b)
	f := seed(b, s, "example.com")
	var middle string
	for i := range 10_000 {
		pt := mustCreateKey(b, s, &keys.APIKey{Name: fmt.Sprintf("k%d", i), UserID: f.user.ID})
		if i == 5_000 {
			middle, _, _ = keys.ParseKey(pt)
		}
	}
	for _, c := range []struct {
		name string
		f    keys.AuditFilter
	}{
		{"target named in every record", keys.AuditFilter{Target: f.user.ID, Limit: 100}},
		{"target named in one record", keys.AuditFilter{Target: middle, Limit: 100}},
		{"newest page", keys.AuditFilter{Limit: 100}},
		{"empty time range", keys.AuditFilter{Since: testNow.Add(time.Hour).Unix(), Limit: 100}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.ListAudit(b.Context(), c.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

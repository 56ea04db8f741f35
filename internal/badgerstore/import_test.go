package badgerstore

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestImportBeyondTxnLimit: an import too large for one Badger transaction writes nothing and
// says what to do, and its dry run (which writes into a transaction it discards) says the
// same; the largest import that fits is logged, for docs/import.md#limits.
func TestImportBeyondTxnLimit(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := func(n int) *keys.ImportBatch {
		b := &keys.ImportBatch{
			Domains: []keys.ImportDomain{{Line: 1, Domain: keys.Domain{ID: "authority-1", Name: "A", Domain: "a.example.com"}}},
			Users:   []keys.ImportUser{{Line: 2, User: keys.User{ID: "user-1", AuthorityID: "authority-1", Name: "U", Email: "u@a.example.com"}}},
		}
		for i := range n {
			b.Keys = append(b.Keys, keys.ImportKey{Line: 3 + i, Hash: strings.Repeat("0f", 64), Key: keys.APIKey{
				ID: fmt.Sprintf("%032x", i+1), Name: fmt.Sprint("booking panel ", i), Description: "meeting room booking panel",
				UserID: "user-1", Scopes: []string{"users.read", "systems.read", "control", "zones.read", "metadata.read"},
			}})
		}
		return b
	}
	for _, dry := range []bool{true, false} {
		res, err := s.Import(t.Context(), batch(2000), dry)
		if keys.ErrorCode(err) != keys.ECONFLICT || res != nil || !strings.Contains(err.Error(), "split the file") {
			t.Fatalf("Import(dry run %v) of 2000 keys = %+v, %v; want ECONFLICT saying to split", dry, res, err)
		}
	}
	if d, u, k := s.Counts(t.Context()); d+u+k != 0 {
		t.Fatalf("after the refused import: %d domains, %d users, %d keys; want none", d, u, k)
	}
	// The largest dry run that fits, to within 10 keys, by bisection (dry runs write nothing);
	// the import of that many must fit too.
	lo, hi := 1, 2000
	for hi-lo > 10 {
		mid := (lo + hi) / 2
		if _, err := s.Import(t.Context(), batch(mid), true); err == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	t.Logf("one Badger transaction imports about %d keys like the booking panel's", lo)
	if res, err := s.Import(t.Context(), batch(lo), false); err != nil || res.Created.Keys != lo {
		t.Errorf("Import of %d keys = %+v, %v", lo, res, err)
	}
}

package etcdstore_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestImportBeyondTxnLimit: an import too large for one etcd transaction writes nothing, says
// why and what to do, and its dry run predicts it; the same rows split into parts that fit
// are imported part by part, the rows repeated in each part left unchanged.
func TestImportBeyondTxnLimit(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/import-big/"), etcdstore.WithMaxTxnOps(32))
	ctx := t.Context()
	batch := func(from, to int) *keys.ImportBatch {
		b := &keys.ImportBatch{
			Domains: []keys.ImportDomain{{Line: 1, Domain: keys.Domain{ID: "authority-1", Name: "A", Domain: "a.example.com"}}},
			Users:   []keys.ImportUser{{Line: 2, User: keys.User{ID: "user-1", AuthorityID: "authority-1", Name: "U", Email: "u@a.example.com"}}},
		}
		for i := from; i < to; i++ {
			id := fmt.Sprintf("%032x", i+1) // fixed per i: the parts below share only the domain and user
			b.Keys = append(b.Keys, keys.ImportKey{Line: 3 + i, Hash: strings.Repeat("0f", 64), Key: keys.APIKey{ID: id, Name: fmt.Sprint("k", i), UserID: "user-1", Scopes: []string{}}})
		}
		return b
	}
	const n = 12 // 2 + 2 + 4×12 + 1 = 53 writes > 32
	for _, dry := range []bool{true, false} {
		res, err := s.Import(ctx, batch(0, n), dry)
		if keys.ErrorCode(err) != keys.ECONFLICT || res != nil || !strings.Contains(err.Error(), "split the file") {
			t.Fatalf("Import(dry run %v) of %d keys with --max-txn-ops 32 = %+v, %v; want ECONFLICT saying to split", dry, n, res, err)
		}
		t.Logf("dry run %v: %v", dry, err)
	}
	if d, u, k := s.Counts(ctx); d+u+k != 0 {
		t.Fatalf("after the refused import: %d domains, %d users, %d keys; want none", d, u, k)
	}
	for from := 0; from < n; from += 4 {
		res, err := s.Import(ctx, batch(from, from+4), false)
		if err != nil {
			t.Fatalf("part from %d: %v", from, err)
		}
		if res.Created.Keys != 4 || (from > 0 && res.Unchanged != (keys.ImportCounts{Domains: 1, Users: 1})) {
			t.Errorf("part from %d = %+v", from, res)
		}
	}
	if _, _, k := s.Counts(ctx); k != n {
		t.Errorf("%d keys after the parts, want %d", k, n)
	}
}

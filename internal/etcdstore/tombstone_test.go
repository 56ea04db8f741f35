package etcdstore_test

import (
	"fmt"
	"testing"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestCascadeCostWithDeletionMarks: a cascade's etcd Txn holds one deletion mark per record
// it deletes (doc.go), so its operations are, for a user of n keys, 3n + 6 (per key its
// record, name entry and mark; two range deletes; the user's record, domain entry and mark;
// the audit record) and, for a domain of one such user, 2n + 11 (five range deletes; per key
// its record and mark; the user's record and mark; the domain's record, host entry and mark;
// the audit record: names and index entries go with the range deletes). At exactly that
// limit the delete commits and leaves every mark; one below, it is refused and changes
// nothing.
func TestCascadeCostWithDeletionMarks(t *testing.T) {
	m := startEtcd(t)
	const n = 3
	cases := []struct {
		name string
		ops  int
		del  func(s *etcdstore.Store, d *keys.Domain, u *keys.User) error
	}{
		{"DeleteUser", 3*n + 6, func(s *etcdstore.Store, _ *keys.Domain, u *keys.User) error { return s.DeleteUser(t.Context(), u.ID) }},
		{"DeleteDomain", 2*n + 11, func(s *etcdstore.Store, d *keys.Domain, _ *keys.User) error { return s.DeleteDomain(t.Context(), d.ID) }},
	}
	for _, c := range cases {
		for _, limit := range []int{c.ops - 1, c.ops} {
			t.Run(fmt.Sprintf("%s/%dOps", c.name, limit), func(t *testing.T) {
				ctx := t.Context()
				s := open(t, m.client(t), etcdstore.WithPrefix(fmt.Sprintf("/cost-%s-%d/", c.name, limit)), etcdstore.WithMaxTxnOps(limit))
				d := &keys.Domain{Name: "Main", Domain: "example.com"}
				if err := s.CreateDomain(ctx, d); err != nil {
					t.Fatal(err)
				}
				u := &keys.User{AuthorityID: d.ID, Name: "U", Email: "u@example.com"}
				if err := s.CreateUser(ctx, u); err != nil {
					t.Fatal(err)
				}
				var ids []string
				for i := range n {
					k := &keys.APIKey{Name: fmt.Sprint("k", i), UserID: u.ID}
					if _, err := s.CreateKey(ctx, k); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, k.ID)
				}
				err := c.del(s, d, u)
				if limit < c.ops {
					if keys.ErrorCode(err) != keys.ECONFLICT {
						t.Fatalf("%s with --max-txn-ops %d: %v, want ECONFLICT", c.name, limit, err)
					}
					if _, _, k := s.Counts(ctx); k != n {
						t.Errorf("%d keys after the refused delete, want %d", k, n)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s with --max-txn-ops %d: %v", c.name, limit, err)
				}
				// Every deleted id carries its mark: an import of any of them is a conflict.
				b := &keys.ImportBatch{
					Domains: []keys.ImportDomain{{Line: 1, Domain: keys.Domain{ID: d.ID, Name: "Main", Domain: "example.com"}}},
					Users:   []keys.ImportUser{{Line: 2, User: keys.User{ID: u.ID, AuthorityID: d.ID, Name: "U", Email: "u@example.com"}}},
				}
				for i, id := range ids {
					b.Keys = append(b.Keys, keys.ImportKey{Line: 3 + i, Hash: fmt.Sprintf("%0128x", i), Key: keys.APIKey{ID: id, Name: fmt.Sprint("k", i), UserID: u.ID, Scopes: []string{}}})
				}
				res, err := s.Import(ctx, b, true)
				if err != nil {
					t.Fatal(err)
				}
				want := keys.ImportCounts{Users: 1, Keys: n}
				if c.name == "DeleteDomain" {
					want.Domains = 1
				}
				if res.Conflicts != want {
					t.Errorf("dry-run import of the deleted records: conflicts %+v, want %+v", res.Conflicts, want)
				}
			})
		}
	}
}

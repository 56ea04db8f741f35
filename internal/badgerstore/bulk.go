package badgerstore

import (
	"context"
	"fmt"
	"iter"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Bulk load: keys written in WriteBatches, without transactions (benchmarks).

// importChunk is how many keys go into one WriteBatch before it is flushed and its changes
// reported.
const importChunk = 10_000

// ImportKeys writes keys straight into the store in batches (Badger WriteBatch, no
// transactions), to load a large store quickly, for benchmarks. Importing PlaceOS rows is
// Import's (import.go): all or nothing, checked against what is stored, audited. Each key must have an id of 32 hex characters, a 128-hex-digit hash, a name and an
// existing user and scopes within the limits of CreateKey; its AuthorityID is set to the
// user's domain, its scopes are normalised and an empty permission is "user". Unlike CreateKey it does not check that a name is free in its
// domain or that permissions are within the user's level: the caller guarantees both (two keys
// of one name in one domain leave the name index pointing at the last). It is not atomic: on
// error, the chunks written before stay. It returns the number of keys written. The change
// hooks are called for every key, after its chunk is written. It does not read deletion marks
// (layout.go): it loads fresh benchmark stores, never rows an admin could have revoked.
func (s *Store) ImportKeys(ctx context.Context, seq iter.Seq[keys.BulkKey]) (int, error) {
	s.cascade.RLock()
	defer s.cascade.RUnlock()
	users := map[string]*keys.User{}
	written := 0
	var (
		wb    *badger.WriteBatch
		chunk []keys.Change
	)
	flush := func() error {
		if wb == nil {
			return nil
		}
		err := wb.Flush()
		wb = nil
		if err != nil {
			return fmt.Errorf("import keys: %w", err)
		}
		written += len(chunk)
		s.nKeys.Add(int64(len(chunk)))
		s.notify(chunk)
		chunk = chunk[:0]
		return nil
	}
	defer func() {
		if wb != nil {
			wb.Cancel()
		}
	}()
	for bk := range seq {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		k := bk.Key
		if err := keys.CheckImport(&k, bk.Hash); err != nil {
			return written, err
		}
		u, ok := users[k.UserID]
		if !ok {
			var err error
			if u, err = s.GetUser(ctx, k.UserID); err != nil {
				return written, fmt.Errorf("import key %s: user %s: %w", k.ID, k.UserID, err)
			}
			users[k.UserID] = u
		}
		k.AuthorityID = u.AuthorityID
		if wb == nil {
			// Each chunk is judged on the space left, as every write is (space.go).
			if err := s.CheckSpace(); err != nil {
				return written, err
			}
			wb = s.db.NewWriteBatch()
		}
		if err := putKey(wb, &k, bk.Hash); err != nil {
			return written, fmt.Errorf("import key %s: %w", k.ID, err)
		}
		if err := wb.Set(kKeyName(k.AuthorityID, k.Name), []byte(k.ID)); err != nil {
			return written, fmt.Errorf("import keys: %w", err)
		}
		chunk = append(chunk, keys.Change{Kind: keys.KindKey, ID: k.ID})
		if len(chunk) == importChunk {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	return written, flush()
}

package keys

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// BulkKey is one key for ImportKeys: the key as the store keeps it and its hash
// (hex(HMAC-SHA512(key = secret, message = id)), as Generate returns it or a PlaceOS row holds
// it).
type BulkKey struct {
	Key  APIKey
	Hash string
}

// importChunk is how many keys go into one WriteBatch before it is flushed and its changes
// reported.
const importChunk = 10_000

// ImportKeys writes keys straight into the store in batches (Badger WriteBatch, no
// transactions), to load a large store quickly: for benchmarks and for importing PlaceOS key
// rows. Each key must have an id of 32 hex characters, a 128-hex-digit hash, a name and an
// existing user and scopes within the limits of CreateKey; its AuthorityID is set to the
// user's domain, its scopes are normalised and an empty permission is "user". Unlike CreateKey it does not check that a name is free in its
// domain or that permissions are within the user's level: the caller guarantees both (two keys
// of one name in one domain leave the name index pointing at the last). It is not atomic: on
// error, the chunks written before stay. It returns the number of keys written. The change
// hooks are called for every key, after its chunk is written.
func (s *Store) ImportKeys(ctx context.Context, seq iter.Seq[BulkKey]) (int, error) {
	s.cascade.RLock()
	defer s.cascade.RUnlock()
	users := map[string]*User{}
	written := 0
	var (
		wb    *badger.WriteBatch
		chunk []Change
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
		if err := checkImport(&k, bk.Hash); err != nil {
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
		chunk = append(chunk, Change{Kind: KindKey, ID: k.ID})
		if len(chunk) == importChunk {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	return written, flush()
}

func checkImport(k *APIKey, hash string) error {
	if len(k.ID) != idLen || !isLowerHex(k.ID) {
		return Errorf(EINVALID, "import key %q: id is not 32 lowercase hex characters", k.ID)
	}
	if _, err := hex.DecodeString(hash); err != nil || len(hash) != 128 {
		return Errorf(EINVALID, "import key %s: hash is not 128 hex digits", k.ID)
	}
	if strings.TrimSpace(k.Name) == "" || k.UserID == "" {
		return Errorf(EINVALID, "import key %s: name and user_id are required", k.ID)
	}
	if fs := checkScopeLimits(k.Scopes, nil); len(fs) > 0 {
		return Errorf(EINVALID, "import key %s: scopes %s", k.ID, fs[0].Reason)
	}
	scopes, err := NormalizeScopes(k.Scopes)
	if err != nil {
		return err
	}
	k.Scopes = scopes
	if k.Permissions == "" {
		k.Permissions = PermissionUser
	}
	if !k.Permissions.Valid() {
		return Errorf(EINVALID, "import key %s: permissions %q", k.ID, k.Permissions)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// kCounts holds the record counts as of the last clean Close (JSON storedCounts). Open takes
// it and deletes it, so that a process that dies without Close leaves none and the next Open
// counts by scanning; with it, Open does not read every key of a large store (start-up time,
// and the pages a scan would pull into memory).
var kCounts = []byte("meta/counts")

type storedCounts struct {
	Domains int64 `json:"domains"`
	Users   int64 `json:"users"`
	Keys    int64 `json:"keys"`
}

// initCounts sets the counters from the checkpoint of the last Close, or by scanning.
func (s *Store) initCounts() error {
	var c storedCounts
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		err := getJSON(txn, kCounts, &c)
		if errors.Is(err, badger.ErrKeyNotFound) {
			c.Domains = int64(countPrefix(txn, pDomain))
			c.Users = int64(countPrefix(txn, pUser))
			c.Keys = int64(countPrefix(txn, pKey))
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return err
	}
	if found {
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(kCounts) }); err != nil {
			return err
		}
	}
	s.nDomains.Store(c.Domains)
	s.nUsers.Store(c.Users)
	s.nKeys.Store(c.Keys)
	return nil
}

// saveCounts writes the counters for the next Open.
func (s *Store) saveCounts() error {
	c := storedCounts{Domains: s.nDomains.Load(), Users: s.nUsers.Load(), Keys: s.nKeys.Load()}
	return s.db.Update(func(txn *badger.Txn) error { return setJSON(txn, kCounts, &c) })
}

// Compact flattens the store's LSM tree into one level. Call it after a large ImportKeys and
// before Close: otherwise the next Open starts with compactions of everything imported, which
// take CPU and hundreds of MB of memory while the service begins to serve.
func (s *Store) Compact() error {
	if err := s.db.Flatten(2); err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	return nil
}

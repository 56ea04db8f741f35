package badgerstore

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Authentication: a presented key verified against its stored hash (docs/keys.md#verification).

// KeyForAuth returns, read in one transaction, the key with the given id including its Hash,
// its user and its domain. It returns ENOTFOUND if any of the three is missing. It is meant
// for verification (Authenticate, caches) and never for a response.
func (s *Store) KeyForAuth(ctx context.Context, id string) (*keys.APIKey, *keys.User, *keys.Domain, error) {
	var (
		k *keys.APIKey
		u *keys.User
		d *keys.Domain
	)
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		if k, err = getKey(txn, id); err != nil {
			return err
		}
		if u, err = getUser(txn, k.UserID); err != nil {
			return err
		}
		d, err = getDomain(txn, k.AuthorityID)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return k, u, d, nil
}

// Authenticate verifies a presented key at now: a malformed key is rejected before any store
// access, then the key is looked up by id, its HMAC compared in constant time, and its expiry
// checked. It returns ErrUnknownKey (malformed, unknown id, wrong secret, or a key whose user
// or domain is gone), ErrExpiredKey, or an internal error. The result's key has no hash.
func (s *Store) Authenticate(ctx context.Context, plaintext string, now time.Time) (*keys.AuthResult, error) {
	return keys.Authenticate(ctx, plaintext, now, s.KeyForAuth)
}

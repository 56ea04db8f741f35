package etcdstore

import (
	"context"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Authentication: a presented key verified against its stored hash (docs/keys.md#verification).

// KeyForAuth returns, read at one revision, the key with the given id including its Hash, its
// user and its domain. It returns ENOTFOUND if any of the three is missing.
func (s *Store) KeyForAuth(ctx context.Context, id string) (*keys.APIKey, *keys.User, *keys.Domain, error) {
	var (
		k *keys.APIKey
		u *keys.User
		d *keys.Domain
	)
	err := s.view(ctx, func(t *tx) (err error) {
		if k, err = getKey(t, id); err != nil {
			return err
		}
		if u, err = getUser(t, k.UserID); err != nil {
			return err
		}
		d, err = getDomain(t, k.AuthorityID)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return k, u, d, nil
}

// Authenticate verifies a presented key at now: its shape, id, secret (in constant time) and
// expiry. It returns ErrUnknownKey, ErrExpiredKey, or a store error.
func (s *Store) Authenticate(ctx context.Context, plaintext string, now time.Time) (*keys.AuthResult, error) {
	return keys.Authenticate(ctx, plaintext, now, s.KeyForAuth)
}

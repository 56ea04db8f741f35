package badgerstore

import (
	"cmp"
	"context"
	"errors"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// RotateKey replaces the key id by a new key with the same name, description, scopes, user,
// level, limits and expiry (docs/keys.md#rotation), in one transaction: the new key is
// stored, the old one gets expires_at = min(own, now + overlap) and replaced_by, and the
// name's index entry moves to the new key. The rule is keys.Rotation's; errors as
// keys.Service.RotateKey.
func (s *Store) RotateKey(ctx context.Context, id string, r keys.KeyRotation) (*keys.RotatedKey, error) {
	p, err := keys.PrepareRotation(r, s.now())
	if err != nil {
		return nil, err
	}
	var out *keys.RotatedKey

	// A create, as CreateKey's: a user delete must not miss the new key (store.go).
	s.cascade.RLock()
	defer s.cascade.RUnlock()
	err = s.update(ctx, func(t *tx) error {
		old, err := getKey(t.txn, id)
		if err != nil {
			return err
		}
		before, hash := *old, old.Hash
		before.Hash = ""
		user := func(id string) (*keys.User, error) { return getUser(t.txn, id) }
		rec, err := p.Apply(old, user)
		if err != nil {
			return err
		}
		if dup, err := keyIDUsed(t.txn, rec.ID); err != nil || dup {
			return cmp.Or(err, errors.New("rotate key: id collision"))
		}
		if err := putKey(t.txn, rec, p.Hash()); err != nil {
			return err
		}
		if err := putKey(t.txn, old, hash); err != nil {
			return err
		}
		// The name belongs to the key that is not replaced (deleteKeyTx relies on it).
		if err := t.txn.Set(kKeyName(rec.AuthorityID, rec.Name), []byte(rec.ID)); err != nil {
			return err
		}
		t.changed(keys.KindKey, old.ID, nil, 0)
		t.changed(keys.KindKey, rec.ID, &t.dKeys, 1)
		out = p.Result(rec, old)
		// One record, on the old key: its changed replaced_by names the new one.
		t.audit(keys.AuditRotate, keys.KindKey, old.ID, &before, out.Old)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

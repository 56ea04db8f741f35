package etcdstore

import (
	"context"
	"fmt"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// RotateKey replaces the key id by a new key with the same name, description, scopes, user,
// level, limits and expiry (docs/keys.md#rotation), in one etcd Txn: the new key is stored,
// the old one gets expires_at = min(own, now + overlap) and replaced_by, and the name's index
// entry moves to the new key. The old key and its user are in the commit's compares, so a
// concurrent change of either (a delete of the user included) makes the rotation run again.
// The rule is keys.Rotation's; errors as keys.Service.RotateKey.
func (s *Store) RotateKey(ctx context.Context, id string, r keys.KeyRotation) (*keys.RotatedKey, error) {
	p, err := keys.PrepareRotation(r, s.now())
	if err != nil {
		return nil, err
	}
	var out *keys.RotatedKey
	err = s.update(ctx, func(t *tx) error {
		old, err := getKey(t, id)
		if err != nil {
			return err
		}
		before, hash := *old, old.Hash
		before.Hash = ""
		user := func(id string) (*keys.User, error) { return getUser(t, id) }
		rec, err := p.Apply(old, user)
		if err != nil {
			return err
		}
		if dup, err := keyIDUsed(t, rec.ID); err != nil || dup {
			return cmpOr(err, fmt.Errorf("rotate key: id collision"))
		}
		putKey(t, rec, p.Hash())
		t.put(kKey(old.ID), encodeKey(old, hash))
		// The name belongs to the key that is not replaced (deleteKeyTx relies on it).
		t.put(kKeyName(rec.AuthorityID, rec.Name), rec.ID)
		t.changed(keys.KindKey, old.ID)
		t.changed(keys.KindKey, rec.ID)
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

package badgerstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// API keys: create (key material from keys.Generate, the hash stored only), read, list with
// paging, update, delete, and the batched last_used_at writes (docs/keys.md).

// CreateKey validates k, generates its key material and stores k with the hash only. It
// returns the plaintext key, which exists nowhere else; on success k holds the stored key
// (without hash). Scopes are normalised and an empty permission means "user"; AuthorityID is
// set to the user's domain, whatever was given. It returns EINVALID for a malformed scope and
// EUNPROCESSABLE when the name is missing, too long or taken in the domain (case-insensitive),
// the user does not exist, the permission is invalid or above the user's level, expires_at
// is not in the future, or the scopes break a limit (MaxScopes, MaxScopeLength,
// MaxScopesLength).
func (s *Store) CreateKey(ctx context.Context, k *keys.APIKey) (keys.Secret, error) {
	n, err := keys.PrepareKey(k, s.now())
	if err != nil {
		return "", err
	}
	rec := &n.Record

	s.cascade.RLock()
	defer s.cascade.RUnlock()
	err = s.update(ctx, func(t *tx) error {
		user := func(id string) (*keys.User, error) { return getUser(t.txn, id) }
		nameTaken := func(name string) (bool, error) { return exists(t.txn, kKeyName(rec.AuthorityID, name)) }
		if err := n.Validate(user, nameTaken); err != nil {
			return err
		}
		if dup, err := keyIDUsed(t.txn, rec.ID); err != nil || dup {
			return cmp.Or(err, errors.New("create key: id collision"))
		}
		if err := putKey(t.txn, rec, n.Hash); err != nil {
			return err
		}
		if err := t.txn.Set(kKeyName(rec.AuthorityID, rec.Name), []byte(rec.ID)); err != nil {
			return err
		}
		t.changed(keys.KindKey, rec.ID, &t.dKeys, 1)
		t.audit(keys.AuditCreate, keys.KindKey, rec.ID, nil, rec)
		return nil
	})
	if err != nil {
		return "", err
	}
	*k = *rec
	return n.Plaintext, nil
}

// GetKey returns the key with the given id, without its hash, or ENOTFOUND.
func (s *Store) GetKey(ctx context.Context, id string) (*keys.APIKey, error) {
	var k *keys.APIKey
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		k, err = getKey(txn, id)
		return err
	})
	if k != nil {
		k.Hash = ""
	}
	return k, err
}

// ListKeys returns one page of the keys matching f, sorted by name (case-insensitive) then id,
// and the number of keys matching f in all. Keys carry no hash.
func (s *Store) ListKeys(ctx context.Context, f keys.KeyFilter) ([]*keys.APIKey, int, error) {
	var all []*keys.APIKey
	err := s.view(ctx, func(txn *badger.Txn) error {
		if f.AuthorityID == "" {
			return scanJSON(txn, pKey, func() any { return new(keyRecord) }, func(v any) { all = append(all, &v.(*keyRecord).APIKey) })
		}
		ids, err := collect(txn, pKeyByDomain+f.AuthorityID+"/")
		if err != nil {
			return err
		}
		for _, id := range ids {
			k, err := getKey(txn, id)
			if err != nil {
				return err
			}
			all = append(all, k)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	out, n := keys.SelectKeys(all, f)
	return out, n, nil
}

// UpdateKey applies u to the key id and returns the stored key (without hash). The fields it
// changes are validated as in CreateKey; fields it leaves alone are not re-checked, so an
// expired key can still be renamed and a key above its since-demoted user's level can still
// be described. u.Check, if set, judges the change inside the transaction. It returns
// ENOTFOUND, EINVALID (scope), EUNPROCESSABLE, or Check's error.
func (s *Store) UpdateKey(ctx context.Context, id string, u keys.KeyUpdate) (*keys.APIKey, error) {
	p, err := keys.PrepareKeyUpdate(u, s.now())
	if err != nil {
		return nil, err
	}
	var out *keys.APIKey
	err = s.update(ctx, func(t *tx) error {
		rec, err := getKey(t.txn, id)
		if err != nil {
			return err
		}
		hash, oldName := rec.Hash, rec.Name
		before, err := json.Marshal(rec) // as it was: Apply edits rec in place
		if err != nil {
			return err
		}
		user := func(id string) (*keys.User, error) { return getUser(t.txn, id) }
		nameTaken := func(name string) (bool, error) { return exists(t.txn, kKeyName(rec.AuthorityID, name)) }
		renamed, err := p.Apply(rec, user, nameTaken)
		if err != nil {
			return err
		}
		if renamed {
			if err := t.txn.Delete(kKeyName(rec.AuthorityID, oldName)); err != nil {
				return err
			}
			if err := t.txn.Set(kKeyName(rec.AuthorityID, rec.Name), []byte(rec.ID)); err != nil {
				return err
			}
		}
		if err := putKey(t.txn, rec, hash); err != nil {
			return err
		}
		t.changed(keys.KindKey, rec.ID, nil, 0)
		rec.Hash = ""
		t.audit(keys.AuditUpdate, keys.KindKey, rec.ID, json.RawMessage(before), rec)
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteKey deletes the key id. Each check, if any, is called inside the transaction with the
// key as stored (no hash) before it is deleted; an error aborts the delete and is returned as
// is (the admin API's minting cap runs here, as UpdateKey's Check). It returns ENOTFOUND or a
// check's error.
func (s *Store) DeleteKey(ctx context.Context, id string, check ...func(k *keys.APIKey) error) error {
	return s.update(ctx, func(t *tx) error {
		k, err := getKey(t.txn, id)
		if err != nil {
			return err
		}
		k.Hash = ""
		if err := keys.CheckKeyDeletes(k, check); err != nil {
			return err
		}
		t.audit(keys.AuditDelete, keys.KindKey, id, k, nil)
		return deleteKeyTx(t, id)
	})
}

// keyIDUsed reports whether id names a stored key or a deleted one. A random 128-bit id never
// collides; if it did, the create fails rather than reuse it: a deleted key's id must never
// name a key again (its deletion mark, layout.go).
func keyIDUsed(txn *badger.Txn, id string) (bool, error) {
	if dup, err := exists(txn, kKey(id)); err != nil || dup {
		return dup, err
	}
	_, dup, err := deletedAt(txn, keys.KindKey, id)
	return dup, err
}

func deleteKeyTx(t *tx, id string) error {
	k, err := getKey(t.txn, id)
	if err != nil {
		return err
	}
	del := [][]byte{kKey(id), kKeyByDomain(k.AuthorityID, id), kKeyByUser(k.UserID, id)}
	if k.ReplacedBy == "" { // a replaced key's name is indexed to its replacement (rotate.go)
		del = append(del, kKeyName(k.AuthorityID, k.Name))
	}
	for _, key := range del {
		if err := t.txn.Delete(key); err != nil {
			return err
		}
	}
	if err := markDeleted(t, keys.KindKey, id); err != nil {
		return err
	}
	t.changed(keys.KindKey, id, &t.dKeys, -1)
	return nil
}

// deleteIndexedKeys deletes every key listed under an index prefix (keys by user, by domain).
func deleteIndexedKeys(t *tx, prefix string) error {
	ids, err := collect(t.txn, prefix)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := deleteKeyTx(t, id); err != nil {
			return err
		}
	}
	return nil
}

// maxUsesPerTxn bounds the keys RecordUse writes in one transaction.
const maxUsesPerTxn = 1000

// RecordUse sets last_used_at of the keys in uses (key id → Unix seconds), keeping a later
// value already stored and skipping keys deleted meanwhile. It does not call the OnChange
// hooks: last_used_at plays no part in a decision, so no cache needs to forget anything.
func (s *Store) RecordUse(ctx context.Context, uses map[string]int64) error {
	ids := make([]string, 0, len(uses))
	for id := range uses {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxUsesPerTxn)]
		ids = ids[len(chunk):]
		err := s.update(ctx, func(t *tx) error {
			for _, id := range chunk {
				rec, err := getKey(t.txn, id)
				if keys.ErrorCode(err) == keys.ENOTFOUND {
					continue
				}
				if err != nil {
					return err
				}
				if !rec.MarkUsed(uses[id]) {
					continue
				}
				if err := putKey(t.txn, rec, rec.Hash); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

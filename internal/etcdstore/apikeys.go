package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// API keys: create (key material from keys.Generate, the hash stored only), read, list with
// paging, update, delete, and the batched last_used_at writes (docs/keys.md).

// CreateKey validates k, generates its key material and stores k with the hash only. It
// returns the plaintext key, which exists nowhere else; on success k holds the stored key
// (without hash). The name's index entry is created only if absent (a create-only compare),
// and the user record read is in the commit's compares. Errors as keys.Service.CreateKey.
func (s *Store) CreateKey(ctx context.Context, k *keys.APIKey) (keys.Secret, error) {
	n, err := keys.PrepareKey(k, s.now())
	if err != nil {
		return "", err
	}
	rec := &n.Record

	err = s.update(ctx, func(t *tx) error {
		user := func(id string) (*keys.User, error) { return getUser(t, id) }
		nameTaken := func(name string) (bool, error) { return t.exists(kKeyName(rec.AuthorityID, name)) }
		if err := n.Validate(user, nameTaken); err != nil {
			return err
		}
		if dup, err := keyIDUsed(t, rec.ID); err != nil || dup {
			return cmpOr(err, fmt.Errorf("create key: id collision"))
		}
		putKey(t, rec, n.Hash)
		t.put(kKeyName(rec.AuthorityID, rec.Name), rec.ID)
		t.changed(keys.KindKey, rec.ID)
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
	err := s.view(ctx, func(t *tx) (err error) {
		k, err = getKey(t, id)
		return err
	})
	if k != nil {
		k.Hash = ""
	}
	return k, err
}

// ListKeys returns one page of the keys matching f, sorted by name (case-insensitive) then id,
// and the number of keys matching f in all. Keys carry no hash. With an AuthorityID it reads
// the domain's index and then only that domain's keys.
func (s *Store) ListKeys(ctx context.Context, f keys.KeyFilter) ([]*keys.APIKey, int, error) {
	var vals [][]byte
	err := s.view(ctx, func(t *tx) (err error) {
		if f.AuthorityID == "" {
			_, vals, err = t.scan(pKey)
			return err
		}
		entries, err := t.collect(pKeyByDomain + f.AuthorityID + "/")
		if err != nil {
			return err
		}
		ks := make([]string, len(entries))
		for i, e := range entries {
			ks[i] = kKey(e[strings.LastIndexByte(e, '/')+1:])
		}
		vals, err = t.getMany(ks)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	all := make([]*keys.APIKey, 0, len(vals))
	for _, v := range vals {
		if v == nil {
			continue
		}
		k, err := decodeKey(v)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, k)
	}
	out, n := keys.SelectKeys(all, f)
	return out, n, nil
}

// UpdateKey applies u to the key id and returns the stored key (without hash). The fields it
// changes are validated as in CreateKey; fields it leaves alone are not re-checked. u.Check,
// if set, judges the change inside the transaction. It returns ENOTFOUND, EINVALID (scope),
// EUNPROCESSABLE, or Check's error.
func (s *Store) UpdateKey(ctx context.Context, id string, u keys.KeyUpdate) (*keys.APIKey, error) {
	p, err := keys.PrepareKeyUpdate(u, s.now())
	if err != nil {
		return nil, err
	}
	var out *keys.APIKey
	err = s.update(ctx, func(t *tx) error {
		rec, err := getKey(t, id)
		if err != nil {
			return err
		}
		hash, oldName := rec.Hash, rec.Name
		before, err := json.Marshal(rec) // as it was: Apply edits rec in place
		if err != nil {
			return err
		}
		user := func(id string) (*keys.User, error) { return getUser(t, id) }
		nameTaken := func(name string) (bool, error) { return t.exists(kKeyName(rec.AuthorityID, name)) }
		renamed, err := p.Apply(rec, user, nameTaken)
		if err != nil {
			return err
		}
		if renamed {
			t.del(kKeyName(rec.AuthorityID, oldName))
			t.put(kKeyName(rec.AuthorityID, rec.Name), rec.ID)
		}
		t.put(kKey(rec.ID), encodeKey(rec, hash))
		t.changed(keys.KindKey, rec.ID)
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
// is. It returns ENOTFOUND or a check's error.
func (s *Store) DeleteKey(ctx context.Context, id string, check ...func(k *keys.APIKey) error) error {
	return s.update(ctx, func(t *tx) error {
		k, err := getKey(t, id)
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
// name a key again (its deletion mark, doc.go).
func keyIDUsed(t *tx, id string) (bool, error) {
	if dup, err := t.exists(kKey(id)); err != nil || dup {
		return dup, err
	}
	_, dup, err := deletedAt(t, keys.KindKey, id)
	return dup, err
}

// deleteKeyTx deletes the key id with its index entries (those under a prefix the tx deletes
// as a range cost nothing more) and leaves its deletion mark.
func deleteKeyTx(t *tx, id string) error {
	k, err := getKey(t, id)
	if err != nil {
		return err
	}
	t.del(kKey(id))
	t.del(kKeyByDomain(k.AuthorityID, k.UserID, id))
	t.del(kKeyByUser(k.UserID, id))
	if k.ReplacedBy == "" { // a replaced key's name is indexed to its replacement (rotate.go)
		t.del(kKeyName(k.AuthorityID, k.Name))
	}
	markDeleted(t, keys.KindKey, id)
	t.changed(keys.KindKey, id)
	return nil
}

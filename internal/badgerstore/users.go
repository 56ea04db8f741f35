package badgerstore

import (
	"cmp"
	"context"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Users: create, read, list, patch and the cascading delete (docs/http-api.md#users).

// CreateUser validates u, gives it an id and timestamps, and stores it; on success u holds the
// stored record. It returns EUNPROCESSABLE when the name is missing or too long, the email has
// no "@", or the authority_id is missing or names no domain.
func (s *Store) CreateUser(ctx context.Context, u *keys.User) error {
	rec, failures := keys.PrepareUser(u, s.now())
	s.cascade.RLock()
	defer s.cascade.RUnlock()
	err := s.update(ctx, func(t *tx) error {
		domainExists := func(id string) (bool, error) { return exists(t.txn, kDomain(id)) }
		if err := keys.ValidateNewUser(&rec, failures, domainExists); err != nil {
			return err
		}
		if err := setJSON(t.txn, kUser(rec.ID), &rec); err != nil {
			return err
		}
		if err := t.txn.Set(kUserByDomain(rec.AuthorityID, rec.ID), nil); err != nil {
			return err
		}
		t.changed(keys.KindUser, rec.ID, &t.dUsers, 1)
		t.audit(keys.AuditCreate, keys.KindUser, rec.ID, nil, &rec)
		return nil
	})
	if err != nil {
		return err
	}
	*u = rec
	return nil
}

// GetUser returns the user with the given id, or ENOTFOUND.
func (s *Store) GetUser(ctx context.Context, id string) (*keys.User, error) {
	var u *keys.User
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		u, err = getUser(txn, id)
		return err
	})
	return u, err
}

// ListUsers returns the users of the domain authorityID ("" for every domain), sorted by name
// then id. An unknown domain has no users.
func (s *Store) ListUsers(ctx context.Context, authorityID string) ([]*keys.User, error) {
	var out []*keys.User
	err := s.view(ctx, func(txn *badger.Txn) error {
		if authorityID == "" {
			return scanJSON(txn, pUser, func() any { u := new(keys.User); out = append(out, u); return u })
		}
		ids, err := collect(txn, pUserByDomain+authorityID+"/")
		if err != nil {
			return err
		}
		for _, id := range ids {
			u, err := getUser(txn, id)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *keys.User) int { return keys.CompareByName(a.Name, a.ID, b.Name, b.ID) })
	return out, nil
}

// UpdateUser replaces the name, email, flags and groups of the user u.ID, validated as in
// CreateUser; on success u holds the stored record. It is ModifyUser with a change that
// overwrites every field; an empty AuthorityID keeps the stored one. It returns ENOTFOUND or
// EUNPROCESSABLE (a different AuthorityID included). Lowering a user's level narrows its keys
// at once (the policy caps a key at its user's level); the keys themselves are not rewritten.
func (s *Store) UpdateUser(ctx context.Context, u *keys.User) error {
	rec := *u
	out, err := s.ModifyUser(ctx, u.ID, func(cur *keys.User) error {
		authority := cmp.Or(rec.AuthorityID, cur.AuthorityID)
		*cur = rec
		cur.AuthorityID = authority
		return nil
	})
	if err != nil {
		return err
	}
	*u = *out
	return nil
}

// ModifyUser reads the user id, lets change edit it and stores the result, all in one
// transaction, validated as in CreateUser; it returns the stored record. The id and
// created_at keep their stored values whatever change does. A user cannot move to another
// domain, because its keys belong to its domain: an AuthorityID that change leaves different
// from the stored one (empty included) is EUNPROCESSABLE, field "authority_id", reason "cannot
// be changed" (keys.NormalizeUserUpdate, the one place that rule lives). An error from change
// aborts the update and is returned as is. Because change sees the record it replaces, a check it makes (such as
// "this field keeps its value") cannot be raced by a concurrent update, and two concurrent
// patches of different fields both survive: the second conflicts and is retried with the
// first one's record. It returns ENOTFOUND, EUNPROCESSABLE or change's error.
func (s *Store) ModifyUser(ctx context.Context, id string, change func(u *keys.User) error) (*keys.User, error) {
	now := s.now()
	var out *keys.User
	err := s.update(ctx, func(t *tx) error {
		old, err := getUser(t.txn, id)
		if err != nil {
			return err
		}
		rec, err := keys.PatchUser(old, change, now)
		if err != nil {
			return err
		}
		if err := setJSON(t.txn, kUser(rec.ID), rec); err != nil {
			return err
		}
		t.changed(keys.KindUser, rec.ID, nil, 0)
		t.audit(keys.AuditUpdate, keys.KindUser, rec.ID, old, rec)
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteUser deletes the user and its keys in one transaction. Each check, if any, is called
// inside the transaction with the user and its keys (no hashes) before anything is deleted;
// an error aborts the delete and is returned as is (the admin API's level cap runs here). It
// returns ENOTFOUND or a check's error.
func (s *Store) DeleteUser(ctx context.Context, id string, check ...func(u *keys.User, ks []*keys.APIKey) error) error {
	s.cascade.Lock()
	defer s.cascade.Unlock()
	return s.update(ctx, func(t *tx) error {
		if err := checkUserDelete(t.txn, id, check); err != nil {
			return err
		}
		u, err := getUser(t.txn, id)
		if err != nil {
			return err
		}
		t.audit(keys.AuditDelete, keys.KindUser, id, u, nil)
		return deleteUserTx(t, id)
	})
}

// checkUserDelete runs each check on the user id and its keys (without hashes) as stored, in
// the delete's transaction; with no check it reads nothing.
func checkUserDelete(txn *badger.Txn, id string, check []func(u *keys.User, ks []*keys.APIKey) error) error {
	if len(check) == 0 {
		return nil
	}
	u, err := getUser(txn, id)
	if err != nil {
		return err
	}
	ids, err := collect(txn, pKeyByUser+id+"/")
	if err != nil {
		return err
	}
	ks := make([]*keys.APIKey, 0, len(ids))
	for _, kid := range ids {
		k, err := getKey(txn, kid)
		if err != nil {
			return err
		}
		ks = append(ks, k)
	}
	return keys.CheckUserDelete(u, ks, check)
}

func deleteUserTx(t *tx, id string) error {
	u, err := getUser(t.txn, id)
	if err != nil {
		return err
	}
	if err := deleteIndexedKeys(t, pKeyByUser+id+"/"); err != nil {
		return err
	}
	if err := t.txn.Delete(kUserByDomain(u.AuthorityID, id)); err != nil {
		return err
	}
	if err := t.txn.Delete(kUser(id)); err != nil {
		return err
	}
	if err := markDeleted(t, keys.KindUser, id); err != nil {
		return err
	}
	t.changed(keys.KindUser, id, &t.dUsers, -1)
	return nil
}

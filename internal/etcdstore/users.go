package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Users: create, read, list, patch and the cascading delete (docs/http-api.md#users).

// CreateUser validates u, gives it an id and timestamps, and stores it; on success u holds the
// stored record. Reading the domain puts it in the commit's compares, so a user cannot be
// created in a domain deleted meanwhile. It returns EUNPROCESSABLE when the name is missing
// or too long, the email has no "@", or the authority_id is missing or names no domain.
func (s *Store) CreateUser(ctx context.Context, u *keys.User) error {
	rec, failures := keys.PrepareUser(u, s.now())
	err := s.update(ctx, func(t *tx) error {
		domainExists := func(id string) (bool, error) { return t.exists(kDomain(id)) }
		if err := keys.ValidateNewUser(&rec, failures, domainExists); err != nil {
			return err
		}
		if dup, err := t.exists(kUser(rec.ID)); err != nil || dup {
			return cmpOr(err, fmt.Errorf("create user: id collision"))
		}
		t.put(kUser(rec.ID), encode(&rec))
		t.put(kUserByDomain(rec.AuthorityID, rec.ID), "")
		t.changed(keys.KindUser, rec.ID)
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
	err := s.view(ctx, func(t *tx) (err error) {
		u, err = getUser(t, id)
		return err
	})
	return u, err
}

// ListUsers returns the users of the domain authorityID ("" for every domain), sorted by name
// then id. An unknown domain has no users.
func (s *Store) ListUsers(ctx context.Context, authorityID string) ([]*keys.User, error) {
	var vals [][]byte
	err := s.view(ctx, func(t *tx) (err error) {
		if authorityID == "" {
			_, vals, err = t.scan(pUser)
			return err
		}
		ids, err := t.collect(pUserByDomain + authorityID + "/")
		if err != nil {
			return err
		}
		ks := make([]string, len(ids))
		for i, id := range ids {
			ks[i] = kUser(id)
		}
		vals, err = t.getMany(ks)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*keys.User, 0, len(vals))
	for _, v := range vals {
		if v == nil {
			continue
		}
		u := new(keys.User)
		if err := json.Unmarshal(v, u); err != nil {
			return nil, fmt.Errorf("decode user: %w", err)
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b *keys.User) int { return keys.CompareByName(a.Name, a.ID, b.Name, b.ID) })
	return out, nil
}

// ModifyUser reads the user id, lets change edit it and stores the result, all in one
// transaction, validated by keys.NormalizeUserUpdate (a user cannot change domain); it returns
// the stored record. It returns ENOTFOUND, EUNPROCESSABLE or change's error.
func (s *Store) ModifyUser(ctx context.Context, id string, change func(u *keys.User) error) (*keys.User, error) {
	now := s.now()
	var out *keys.User
	err := s.update(ctx, func(t *tx) error {
		old, err := getUser(t, id)
		if err != nil {
			return err
		}
		rec, err := keys.PatchUser(old, change, now)
		if err != nil {
			return err
		}
		t.put(kUser(rec.ID), encode(rec))
		t.changed(keys.KindUser, rec.ID)
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
// an error aborts the delete and is returned as is. Listing the user's keys puts their index
// in the commit's compares, so a key created meanwhile makes the delete run again and take it.
// It returns ENOTFOUND, a check's error, or ECONFLICT if the cascade is beyond etcd's
// per-transaction limit.
func (s *Store) DeleteUser(ctx context.Context, id string, check ...func(u *keys.User, ks []*keys.APIKey) error) error {
	return s.update(ctx, func(t *tx) error {
		if err := checkUserDelete(t, id, check); err != nil {
			return err
		}
		u, err := getUser(t, id)
		if err != nil {
			return err
		}
		t.audit(keys.AuditDelete, keys.KindUser, id, u, nil)
		return deleteUserTx(t, id)
	})
}

// checkUserDelete runs each check on the user id and its keys (without hashes) as stored.
func checkUserDelete(t *tx, id string, check []func(u *keys.User, ks []*keys.APIKey) error) error {
	if len(check) == 0 {
		return nil
	}
	u, err := getUser(t, id)
	if err != nil {
		return err
	}
	ids, err := t.collect(pKeyByUser + id + "/")
	if err != nil {
		return err
	}
	ks := make([]*keys.APIKey, 0, len(ids))
	for _, kid := range ids {
		k, err := getKey(t, kid)
		if err != nil {
			return err
		}
		ks = append(ks, k)
	}
	return keys.CheckUserDelete(u, ks, check)
}

// deleteUserTx deletes the user id and its keys: its key indexes by range, each key's record
// and name entry, the user's record and its entry in its domain's index.
func deleteUserTx(t *tx, id string) error {
	u, err := getUser(t, id)
	if err != nil {
		return err
	}
	kids, err := t.collect(pKeyByUser + id + "/")
	if err != nil {
		return err
	}
	for _, kid := range kids {
		if err := deleteKeyTx(t, kid); err != nil {
			return err
		}
	}
	t.delPrefix(pKeyByUser + id + "/")
	t.delPrefix(pKeyByDomain + u.AuthorityID + "/" + id + "/")
	t.del(kUserByDomain(u.AuthorityID, id))
	t.del(kUser(id))
	markDeleted(t, keys.KindUser, id)
	t.changed(keys.KindUser, id)
	return nil
}

package badgerstore

import (
	"context"
	"errors"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Domains: create, read, list, patch and the cascading delete (docs/http-api.md#domains).

// CreateDomain validates d, normalises its host, gives it an id and timestamps, and stores it;
// on success d holds the stored record. It returns EUNPROCESSABLE when the name or host is
// missing or invalid, or when the host is taken (field "domain", reason "has already been
// taken", as PlaceOS reports it, rather than a 409).
func (s *Store) CreateDomain(ctx context.Context, d *keys.Domain) error {
	rec, failures := keys.PrepareDomain(d, s.now())
	err := s.update(ctx, func(t *tx) error {
		hostTaken := func(host string) (bool, error) { return exists(t.txn, kDomainHost(host)) }
		if err := keys.ValidateNewDomain(&rec, failures, hostTaken); err != nil {
			return err
		}
		if err := setJSON(t.txn, kDomain(rec.ID), &rec); err != nil {
			return err
		}
		if err := t.txn.Set(kDomainHost(rec.Domain), []byte(rec.ID)); err != nil {
			return err
		}
		t.changed(keys.KindDomain, rec.ID, &t.dDomains, 1)
		t.audit(keys.AuditCreate, keys.KindDomain, rec.ID, nil, &rec)
		return nil
	})
	if err != nil {
		return err
	}
	*d = rec
	return nil
}

// GetDomain returns the domain with the given id, or ENOTFOUND.
func (s *Store) GetDomain(ctx context.Context, id string) (*keys.Domain, error) {
	var d *keys.Domain
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		d, err = getDomain(txn, id)
		return err
	})
	return d, err
}

// DomainByHost returns the domain whose host is host (normalised first: any case, a port is
// ignored), or ENOTFOUND.
func (s *Store) DomainByHost(ctx context.Context, host string) (*keys.Domain, error) {
	h, ok := keys.NormalizeHost(host)
	if !ok {
		return nil, keys.NotFound("domain", host)
	}
	var d *keys.Domain
	err := s.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(kDomainHost(h))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return keys.NotFound("domain", h)
		}
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		d, err = getDomain(txn, string(id))
		return err
	})
	return d, err
}

// ListDomains returns every domain, sorted by name then id.
func (s *Store) ListDomains(ctx context.Context) ([]*keys.Domain, error) {
	var out []*keys.Domain
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scanJSON(txn, pDomain, func() any { d := new(keys.Domain); out = append(out, d); return d })
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *keys.Domain) int { return keys.CompareByName(a.Name, a.ID, b.Name, b.ID) })
	return out, nil
}

// UpdateDomain replaces the name, host and description of the domain d.ID, validated as in
// CreateDomain; on success d holds the stored record. It is ModifyDomain with a change that
// overwrites every field. It returns ENOTFOUND or EUNPROCESSABLE.
func (s *Store) UpdateDomain(ctx context.Context, d *keys.Domain) error {
	rec := *d
	out, err := s.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error {
		cur.Name, cur.Domain, cur.Description = rec.Name, rec.Domain, rec.Description
		return nil
	})
	if err != nil {
		return err
	}
	*d = *out
	return nil
}

// ModifyDomain reads the domain id, lets change edit it and stores the result, all in one
// transaction, validated as in CreateDomain (a new host must be free); it returns the stored
// record. The id and created_at keep their stored values whatever change does. An error from
// change aborts the update and is returned as is. Because change sees the record it replaces,
// two concurrent patches of different fields both survive: the second conflicts and is
// retried with the first one's record. It returns ENOTFOUND, EUNPROCESSABLE or change's error.
func (s *Store) ModifyDomain(ctx context.Context, id string, change func(d *keys.Domain) error) (*keys.Domain, error) {
	now := s.now()
	var out *keys.Domain
	err := s.update(ctx, func(t *tx) error {
		old, err := getDomain(t.txn, id)
		if err != nil {
			return err
		}
		hostTaken := func(host string) (bool, error) { return exists(t.txn, kDomainHost(host)) }
		rec, hostChanged, err := keys.PatchDomain(old, change, now, hostTaken)
		if err != nil {
			return err
		}
		if hostChanged {
			if err := t.txn.Delete(kDomainHost(old.Domain)); err != nil {
				return err
			}
			if err := t.txn.Set(kDomainHost(rec.Domain), []byte(rec.ID)); err != nil {
				return err
			}
		}
		if err := setJSON(t.txn, kDomain(rec.ID), rec); err != nil {
			return err
		}
		t.changed(keys.KindDomain, rec.ID, nil, 0)
		t.audit(keys.AuditUpdate, keys.KindDomain, rec.ID, old, rec)
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteDomain deletes the domain, its users and their keys in one transaction. It returns
// ENOTFOUND, or ECONFLICT if the cascade is too large for one transaction.
func (s *Store) DeleteDomain(ctx context.Context, id string, check ...func(u *keys.User, ks []*keys.APIKey) error) error {
	s.cascade.Lock()
	defer s.cascade.Unlock()
	return s.update(ctx, func(t *tx) error {
		d, err := getDomain(t.txn, id)
		if err != nil {
			return err
		}
		userIDs, err := collect(t.txn, pUserByDomain+id+"/")
		if err != nil {
			return err
		}
		for _, uid := range userIDs {
			if err := checkUserDelete(t.txn, uid, check); err != nil {
				return err
			}
			if err := deleteUserTx(t, uid); err != nil {
				return err
			}
		}
		// Keys always belong to a user of their domain; sweep any stray one all the same.
		if err := deleteIndexedKeys(t, pKeyByDomain+id+"/"); err != nil {
			return err
		}
		if err := t.txn.Delete(kDomainHost(d.Domain)); err != nil {
			return err
		}
		if err := t.txn.Delete(kDomain(id)); err != nil {
			return err
		}
		if err := markDeleted(t, keys.KindDomain, id); err != nil {
			return err
		}
		t.changed(keys.KindDomain, id, &t.dDomains, -1)
		t.audit(keys.AuditDelete, keys.KindDomain, id, d, nil)
		return nil
	})
}

package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Domains: create, read, list, patch and the cascading delete (docs/http-api.md#domains).

// CreateDomain validates d, normalises its host, gives it an id and timestamps, and stores it;
// on success d holds the stored record. The host's index entry is created only if absent
// (a create-only compare), so two creates of one host cannot both succeed. It returns
// EUNPROCESSABLE when the name or host is missing or invalid, or when the host is taken.
func (s *Store) CreateDomain(ctx context.Context, d *keys.Domain) error {
	rec, failures := keys.PrepareDomain(d, s.now())
	err := s.update(ctx, func(t *tx) error {
		hostTaken := func(host string) (bool, error) { return t.exists(kDomainHost(host)) }
		if err := keys.ValidateNewDomain(&rec, failures, hostTaken); err != nil {
			return err
		}
		if dup, err := t.exists(kDomain(rec.ID)); err != nil || dup {
			return cmpOr(err, fmt.Errorf("create domain: id collision"))
		}
		t.put(kDomain(rec.ID), encode(&rec))
		t.put(kDomainHost(rec.Domain), rec.ID)
		t.changed(keys.KindDomain, rec.ID)
		t.audit(keys.AuditCreate, keys.KindDomain, rec.ID, nil, &rec)
		return nil
	})
	if err != nil {
		return err
	}
	*d = rec
	return nil
}

func cmpOr(err, other error) error {
	if err != nil {
		return err
	}
	return other
}

// GetDomain returns the domain with the given id, or ENOTFOUND.
func (s *Store) GetDomain(ctx context.Context, id string) (*keys.Domain, error) {
	var d *keys.Domain
	err := s.view(ctx, func(t *tx) (err error) {
		d, err = getDomain(t, id)
		return err
	})
	return d, err
}

// DomainByHost returns the domain whose host is host (normalised first), or ENOTFOUND.
func (s *Store) DomainByHost(ctx context.Context, host string) (*keys.Domain, error) {
	h, ok := keys.NormalizeHost(host)
	if !ok {
		return nil, keys.NotFound("domain", host)
	}
	var d *keys.Domain
	err := s.view(ctx, func(t *tx) error {
		id, ok, err := t.get(kDomainHost(h))
		if err != nil {
			return err
		}
		if !ok {
			return keys.NotFound("domain", h)
		}
		d, err = getDomain(t, string(id))
		return err
	})
	return d, err
}

// ListDomains returns every domain, sorted by name then id.
func (s *Store) ListDomains(ctx context.Context) ([]*keys.Domain, error) {
	var out []*keys.Domain
	err := s.view(ctx, func(t *tx) error {
		_, vs, err := t.scan(pDomain)
		if err != nil {
			return err
		}
		for _, v := range vs {
			d := new(keys.Domain)
			if err := json.Unmarshal(v, d); err != nil {
				return fmt.Errorf("decode domain: %w", err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *keys.Domain) int { return keys.CompareByName(a.Name, a.ID, b.Name, b.ID) })
	return out, nil
}

// ModifyDomain reads the domain id, lets change edit it and stores the result, all in one
// transaction, validated as in CreateDomain (a new host must be free); it returns the stored
// record. The id and created_at keep their stored values whatever change does. It returns
// ENOTFOUND, EUNPROCESSABLE or change's error.
func (s *Store) ModifyDomain(ctx context.Context, id string, change func(d *keys.Domain) error) (*keys.Domain, error) {
	now := s.now()
	var out *keys.Domain
	err := s.update(ctx, func(t *tx) error {
		old, err := getDomain(t, id)
		if err != nil {
			return err
		}
		hostTaken := func(host string) (bool, error) { return t.exists(kDomainHost(host)) }
		rec, hostChanged, err := keys.PatchDomain(old, change, now, hostTaken)
		if err != nil {
			return err
		}
		if hostChanged {
			t.del(kDomainHost(old.Domain))
			t.put(kDomainHost(rec.Domain), rec.ID)
		}
		t.put(kDomain(rec.ID), encode(rec))
		t.changed(keys.KindDomain, rec.ID)
		t.audit(keys.AuditUpdate, keys.KindDomain, rec.ID, old, rec)
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteDomain deletes the domain, its users and their keys in one transaction: one range
// delete for each of the domain's indexes and each user's, and one delete per user and key
// record. It returns ENOTFOUND, a check's error, or ECONFLICT if the cascade is beyond etcd's
// per-transaction limit.
func (s *Store) DeleteDomain(ctx context.Context, id string, check ...func(u *keys.User, ks []*keys.APIKey) error) error {
	return s.update(ctx, func(t *tx) error {
		d, err := getDomain(t, id)
		if err != nil {
			return err
		}
		userIDs, err := t.collect(pUserByDomain + id + "/")
		if err != nil {
			return err
		}
		for _, uid := range userIDs {
			if err := checkUserDelete(t, uid, check); err != nil {
				return err
			}
			if err := deleteUserTx(t, uid); err != nil {
				return err
			}
		}
		// Keys always belong to a user of their domain; sweep any stray one all the same.
		stray, err := t.collect(pKeyByDomain + id + "/")
		if err != nil {
			return err
		}
		for _, entry := range stray {
			if err := deleteKeyTx(t, entry[strings.LastIndexByte(entry, '/')+1:]); err != nil && keys.ErrorCode(err) != keys.ENOTFOUND {
				return err
			}
		}
		t.delPrefix(pUserByDomain + id + "/")
		t.delPrefix(pKeyByDomain + id + "/")
		t.delPrefix(pKeyName + id + "/")
		t.del(kDomainHost(d.Domain))
		t.del(kDomain(id))
		markDeleted(t, keys.KindDomain, id)
		t.changed(keys.KindDomain, id)
		t.audit(keys.AuditDelete, keys.KindDomain, id, d, nil)
		return nil
	})
}

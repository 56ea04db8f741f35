package etcdstore

import (
	"context"
	"fmt"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Bootstrap: the first domain, its admin user and their key, created once per cluster
// (docs/cluster.md#bootstrap-once-per-cluster).

// Bootstrap creates d, a user u in it and a key k of that user, all in one etcd transaction,
// if and only if the store holds no domain at all. It returns the plaintext key and true; or
// "", false and no error when a domain exists (another node bootstrapped first, or the store
// is in use). The transaction lists the domain prefix, so of nodes that find the store empty
// at the same moment exactly one commits: the others' compares fail, they re-run, find the
// domain and stop. A node that dies mid-way leaves nothing behind (no domain without its admin
// user and key). d, u and k are validated as their create methods do; u.AuthorityID and
// k.UserID are set here. On success they hold the stored records.
func (s *Store) Bootstrap(ctx context.Context, d *keys.Domain, u *keys.User, k *keys.APIKey) (keys.Secret, bool, error) {
	now := s.now()
	drec, dfail := keys.PrepareDomain(d, now)
	uc := *u
	uc.AuthorityID = drec.ID
	urec, ufail := keys.PrepareUser(&uc, now)
	kc := *k
	kc.UserID = urec.ID
	n, err := keys.PrepareKey(&kc, now)
	if err != nil {
		return "", false, err
	}
	krec := &n.Record
	created := false
	err = s.update(ctx, func(t *tx) error {
		created = false
		ids, err := t.collect(pDomain)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			return nil // bootstrapped already: no write, nothing committed
		}
		hostTaken := func(host string) (bool, error) { return t.exists(kDomainHost(host)) }
		if err := keys.ValidateNewDomain(&drec, dfail, hostTaken); err != nil {
			return err
		}
		t.put(kDomain(drec.ID), encode(&drec))
		t.put(kDomainHost(drec.Domain), drec.ID)
		t.changed(keys.KindDomain, drec.ID)
		t.audit(keys.AuditCreate, keys.KindDomain, drec.ID, nil, &drec)

		// The domain is among this transaction's writes, which its reads see.
		domainExists := func(id string) (bool, error) { return t.exists(kDomain(id)) }
		if err := keys.ValidateNewUser(&urec, ufail, domainExists); err != nil {
			return err
		}
		t.put(kUser(urec.ID), encode(&urec))
		t.put(kUserByDomain(urec.AuthorityID, urec.ID), "")
		t.changed(keys.KindUser, urec.ID)
		t.audit(keys.AuditCreate, keys.KindUser, urec.ID, nil, &urec)

		user := func(id string) (*keys.User, error) { return getUser(t, id) }
		nameTaken := func(name string) (bool, error) { return t.exists(kKeyName(krec.AuthorityID, name)) }
		if err := n.Validate(user, nameTaken); err != nil {
			return err
		}
		if krec.AuthorityID != drec.ID {
			return fmt.Errorf("bootstrap: the key's domain is %q, want %q", krec.AuthorityID, drec.ID)
		}
		putKey(t, krec, n.Hash)
		t.put(kKeyName(krec.AuthorityID, krec.Name), krec.ID)
		t.changed(keys.KindKey, krec.ID)
		t.audit(keys.AuditCreate, keys.KindKey, krec.ID, nil, krec)
		created = true
		return nil
	})
	if err != nil || !created {
		return "", false, err
	}
	*d, *u, *k = drec, urec, *krec
	return n.Plaintext, true, nil
}

package etcdstore

import (
	"context"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Import with ids kept (docs/import.md): all or nothing, in one etcd transaction, so bounded
// by etcd's --max-txn-ops.

// Import imports b (domains, users and keys with their ids, keys with their hashes) as
// keys.Service.Import documents: prepared (keys.PrepareImport) and planned against the store
// (keys.PlanImport) in one transaction, which commits the records to create and the one audit
// record of the import as one etcd Txn, guarded by compares of everything the plan read, or
// writes nothing when a record conflicts or dryRun is set.
//
// One Txn holds at most --max-txn-ops compares and as many operations (WithMaxTxnOps; etcd's
// default 128, which keyauthz serve assumes). An import writes 2 operations per domain, 2 per
// user, 4 per key and 1 audit record, and compares every record, index entry and deletion
// mark it read (about 3 per record, plus the caller's key and user): with the default, about
// 30 keys of existing users. An import beyond the limit is ECONFLICT, nothing written, with a
// message giving the counts: split the file, each part being imported whole and a re-import
// leaving what is already there unchanged. A dry run reports the same error, without writing,
// so that it predicts the import.
func (s *Store) Import(ctx context.Context, b *keys.ImportBatch, dryRun bool) (*keys.ImportResult, error) {
	if err := keys.PrepareImport(b, s.now()); err != nil {
		return nil, err
	}
	var res *keys.ImportResult
	err := s.update(ctx, func(t *tx) error {
		plan, err := keys.PlanImport(b, importReads(t), dryRun)
		if err != nil {
			return err
		}
		res = &plan.Result
		if plan.Result.Conflicts.Total() > 0 || len(plan.Domains)+len(plan.Users)+len(plan.Keys) == 0 {
			return nil
		}
		for _, d := range plan.Domains {
			t.put(kDomain(d.ID), encode(d))
			t.put(kDomainHost(d.Domain), d.ID)
			t.changed(keys.KindDomain, d.ID)
		}
		for _, u := range plan.Users {
			t.put(kUser(u.ID), encode(u))
			t.put(kUserByDomain(u.AuthorityID, u.ID), "")
			t.changed(keys.KindUser, u.ID)
		}
		for _, k := range plan.Keys {
			putKey(t, k, k.Hash)
			t.put(kKeyName(k.AuthorityID, k.Name), k.ID)
			t.changed(keys.KindKey, k.ID)
		}
		// Measure the transaction the import commits, its audit record included, so that a
		// dry run predicts the refusal and the refusal says what to do.
		if err := t.checkImportSize(1); err != nil || dryRun {
			t.writes, t.order, t.changes = map[string]*string{}, nil, nil // nothing to commit
			return err
		}
		t.audit(keys.AuditImport, "import", "", nil, plan.Audit("placeos"))
		res.Imported = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.Conflicts.Total() > 0 && !dryRun {
		return res, keys.ErrImportConflicts
	}
	return res, nil
}

// checkImportSize returns an ECONFLICT error if t, with extra more operations than it holds
// (what update adds later: the audit record), is beyond --max-txn-ops, counted as commit
// counts them.
func (t *tx) checkImportSize(extra int) error {
	cmps := len(t.reads) + len(t.prefixes)
	ops := len(t.rangeDels) + extra
	for _, k := range t.order {
		if t.writes[k] != nil || !t.deletedByRange(k) {
			ops++
		}
	}
	if cmps > t.s.maxOps || ops > t.s.maxOps {
		return keys.Errorf(keys.ECONFLICT, "the import is too large for one etcd transaction (%d writes and %d records read; "+
			"etcd allows %d of each): nothing was imported; split the file into parts (each part is imported whole, "+
			"and rows already imported are left unchanged) (docs/import.md#etcd)", ops, cmps, t.s.maxOps)
	}
	return nil
}

// importReads are keys.PlanImport's reads in t; every one is among the commit's compares.
func importReads(t *tx) keys.ImportReads {
	index := func(key string) (string, bool, error) {
		v, ok, err := t.get(key)
		return string(v), ok, err
	}
	return keys.ImportReads{
		Domain:    func(id string) (*keys.Domain, error) { return getDomain(t, id) },
		User:      func(id string) (*keys.User, error) { return getUser(t, id) },
		Key:       func(id string) (*keys.APIKey, error) { return getKey(t, id) },
		HostOwner: func(host string) (string, bool, error) { return index(kDomainHost(host)) },
		NameOwner: func(domainID, name string) (string, bool, error) { return index(kKeyName(domainID, name)) },
		Deleted:   func(kind, id string) (int64, bool, error) { return deletedAt(t, kind, id) },
	}
}

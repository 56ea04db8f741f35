package badgerstore

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Import with ids kept (docs/import.md): all or nothing, in one Badger transaction.

// Import imports b (domains, users and keys with their ids, keys with their hashes) as
// keys.Service.Import documents: prepared (keys.PrepareImport) and planned against the store
// (keys.PlanImport) inside one transaction, which writes the records to create and the one
// audit record of the import, or nothing when a record conflicts or dryRun is set. A batch too
// large for one Badger transaction (about 600 KiB of records: some 740 keys) is ECONFLICT,
// nothing written; a dry run writes into a transaction it discards, so that it reports that
// too.
func (s *Store) Import(ctx context.Context, b *keys.ImportBatch, dryRun bool) (*keys.ImportResult, error) {
	if err := keys.PrepareImport(b, s.now()); err != nil {
		return nil, err
	}
	// Creates of users and keys hold the cascade lock for reading, as CreateUser and CreateKey do.
	s.cascade.RLock()
	defer s.cascade.RUnlock()
	var res *keys.ImportResult
	err := s.update(ctx, func(t *tx) error {
		plan, err := keys.PlanImport(b, importReads(t.txn), dryRun)
		if err != nil {
			return err
		}
		res = &plan.Result
		if plan.Result.Conflicts.Total() > 0 || len(plan.Domains)+len(plan.Users)+len(plan.Keys) == 0 {
			return nil
		}
		// A dry run writes too, its audit record included, into the transaction it then
		// discards, so that it meets the transaction's size limit exactly where the import
		// would.
		if err := writeImport(t, plan); errors.Is(err, badger.ErrTxnTooBig) {
			return errImportTooBig
		} else if err != nil {
			return err
		}
		// The audit record is written here rather than by update, so that a transaction it
		// makes too large is reported as the import's, and a dry run measures it too.
		t.audit(keys.AuditImport, "import", "", nil, plan.Audit("placeos"))
		if err := t.writeAudit(); errors.Is(err, badger.ErrTxnTooBig) {
			return errImportTooBig
		} else if err != nil {
			return err
		}
		t.audits = nil // written: nothing left for update
		if dryRun {
			return errDryRun
		}
		res.Imported = true
		return nil
	})
	if errors.Is(err, errDryRun) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	if res.Conflicts.Total() > 0 && !dryRun {
		return res, keys.ErrImportConflicts
	}
	return res, nil
}

// errImportTooBig is the ECONFLICT of an import beyond one Badger transaction (about 600 KiB
// of records: a transaction may hold 15% of a memtable, whose size is in space.go).
var errImportTooBig = &keys.Error{Code: keys.ECONFLICT, Message: "the import is too large for one transaction: nothing was imported; " +
	"split the file into parts (each part is imported whole, and rows already imported are left unchanged) (docs/import.md#limits)"}

// errDryRun aborts a dry run's transaction once it has measured its writes; Import turns it
// into success.
var errDryRun = &keys.Error{Code: keys.ECONFLICT, Message: "dry run"}

// writeImport writes the plan's records in t, with their index entries, and counts them.
func writeImport(t *tx, plan *keys.ImportPlan) error {
	for _, d := range plan.Domains {
		if err := setJSON(t.txn, kDomain(d.ID), d); err != nil {
			return err
		}
		if err := t.txn.Set(kDomainHost(d.Domain), []byte(d.ID)); err != nil {
			return err
		}
		t.changed(keys.KindDomain, d.ID, &t.dDomains, 1)
	}
	for _, u := range plan.Users {
		if err := setJSON(t.txn, kUser(u.ID), u); err != nil {
			return err
		}
		if err := t.txn.Set(kUserByDomain(u.AuthorityID, u.ID), nil); err != nil {
			return err
		}
		t.changed(keys.KindUser, u.ID, &t.dUsers, 1)
	}
	for _, k := range plan.Keys {
		if err := putKey(t.txn, k, k.Hash); err != nil {
			return err
		}
		if err := t.txn.Set(kKeyName(k.AuthorityID, k.Name), []byte(k.ID)); err != nil {
			return err
		}
		t.changed(keys.KindKey, k.ID, &t.dKeys, 1)
	}
	return nil
}

// importReads are keys.PlanImport's reads in txn.
func importReads(txn *badger.Txn) keys.ImportReads {
	index := func(key []byte) (string, bool, error) {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		v, err := item.ValueCopy(nil)
		return string(v), err == nil, err
	}
	return keys.ImportReads{
		Domain: func(id string) (*keys.Domain, error) { return getDomain(txn, id) },
		User:   func(id string) (*keys.User, error) { return getUser(txn, id) },
		Key:    func(id string) (*keys.APIKey, error) { return getKey(txn, id) },
		HostOwner: func(host string) (string, bool, error) {
			return index(kDomainHost(host))
		},
		NameOwner: func(domainID, name string) (string, bool, error) {
			return index(kKeyName(domainID, name))
		},
		Deleted: func(kind, id string) (int64, bool, error) { return deletedAt(txn, kind, id) },
	}
}

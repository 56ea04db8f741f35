// Package badgerstore is the Badger adapter of keys.Service: domains, users and API keys in an
// embedded Badger database, opened with synchronous writes (docs/architecture.md#the-store).
//
// Every write that touches several records is one Badger transaction, retried when it loses a
// conflict; committed changes are reported to the OnChange hooks before the write returns,
// so caches never serve what a write changed. Writes made for an admin-API caller re-read the
// caller's key and user in the same transaction (keys.CallerFrom), and every write is refused
// with EINSUFFICIENT before Badger could fault on a full disk
// (docs/operations.md#disk-space). The store passes the conformance suite in
// internal/keys/storetest; validation rules and error codes are the domain's (package keys).
//
// Files by concern: layout.go (key layout and encoding), txn.go (transactions, change hooks,
// caller re-check), domains.go, users.go, apikeys.go, auth.go, iter.go (scans and paging),
// bulk.go (bulk import), store.go (open, close, options, counts), space.go (disk space).
package badgerstore

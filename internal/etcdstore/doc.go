// Package etcdstore is the etcd-backed keys.Service of cluster mode (docs/cluster.md): several
// keyauthz nodes share one set of domains, users and keys kept in etcd, through the official
// client (go.etcd.io/etcd/client/v3). It passes the same conformance suite as badgerstore
// (internal/keys/storetest).
//
// # Layout
//
// Every record and index lives under a configurable prefix (default "/keyauthz/"); ids never
// contain "/":
//
//	d/<domain id>                          Domain (JSON)
//	dh/<host>                              domain id            (domains by host, unique)
//	u/<user id>                            User (JSON)
//	ud/<domain id>/<user id>               empty                (users by domain)
//	k/<key id>                             keyRecord (JSON, with the hash)
//	kd/<domain id>/<user id>/<key id>      empty                (keys by domain)
//	ku/<user id>/<key id>                  empty                (keys by user)
//	kn/<domain id>/<lower(name)>           key id               (key names per domain, unique)
//	a/<audit record id>                    AuditRecord (JSON)   (the audit log, audit.go)
//	t/<kind>/<id>                          keys.Tombstone (JSON: deleted_at) (deletion marks)
//
// The user id inside the keys-by-domain entry lets a user's cascade drop its entries with one
// range delete, so a cascading delete costs etcd about one operation per key (its record) plus
// one per name-index entry, and a domain's a single range delete for all its names.
//
// Every delete of a domain, user or key (kind "domain", "user", "key"), each record of a
// cascade included, puts the record's deletion mark in the same Txn, and nothing removes it:
// an import refuses an id that carries one, and no key is ever created with such an id
// (keys/tombstone.go, docs/import.md#deleted-records). A mark is one more operation per record
// deleted: a user of n keys costs 3n + 6 operations (TestCascadeCostWithDeletionMarks), so
// about 40 keys fit etcd's default limit. The watch ignores the prefix.
//
// # Transactions
//
// A write runs its logic against a snapshot (every read at one revision) and records what it
// read: each record or index key with the mod revision it had (0: absent), and each listed
// prefix. It commits as one etcd Txn whose compares are that read set (a key's mod revision
// unchanged; no key under a listed prefix written after the snapshot), so uniqueness checks
// become create-only compares, a concurrent write of anything read makes the Txn fail, and the
// write is re-run on a fresh snapshot, up to maxAttempts times, then ECONFLICT. Listed
// prefixes also stop phantoms: a key created under a user being deleted fails the delete's
// compare (or the create's, on the user record). A write whose compares or operations exceed
// etcd's per-transaction limit (--max-txn-ops, 128 by default; WithMaxTxnOps) is refused with
// ECONFLICT and a message saying so, as badgerstore refuses a transaction too big for Badger.
//
// # Change hooks
//
// The store's own writes call the OnChange hooks after the commit and before returning. Writes
// made by other processes reach them through an etcd watch on the prefix, started from the
// revision read when the store opened; the watcher skips the revisions this store committed
// itself (it waits for the writes in flight when an event arrives, so that none is reported
// twice), and key updates that changed nothing but last_used_at.
//
// # Confirmation
//
// A heartbeat confirms the store's view every 500 ms (confirm.go): a linearizable read and a
// progress request answered on the watch stream. While a check fails, or after the watch
// broke (an error, a compaction past its revision), the view is unconfirmed
// (UnconfirmedSince, Confirmation, Unreachable); when a check succeeds again the OnResync
// hooks are called, and the caches forget everything (a Change names one record, and the
// changes missed are unknown), before the view is reported confirmed.
package etcdstore

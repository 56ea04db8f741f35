package badgerstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The audit log (docs/audit.md): every admin write queues one record with tx.audit, and update
// writes it in the write's own transaction, so a committed change always has its record and a
// failed write has none. Records live under a/<record id>; ids begin with the time, so the
// key order is the time order and a time range is a key range.

const pAudit = "a/"

func kAudit(id string) []byte { return []byte(pAudit + id) }

// pendingAudit is a record queued by tx.audit: built at once (before and after are encoded
// when audit is called, so later edits of them do not leak in), or the error building it.
type pendingAudit struct {
	rec *keys.AuditRecord
	err error
}

// audit queues the audit record of this write: action on the record kind/id, whose API form
// was before (nil on create) and is after (nil on delete). Call it once per admin write, in
// the method the admin API calls, not in helpers a cascade shares (a cascade is one record).
func (t *tx) audit(action, kind, id string, before, after any) {
	rec, err := keys.NewAuditRecord(t.ctx, t.now, action, kind, id, before, after)
	t.audits = append(t.audits, pendingAudit{rec: rec, err: err})
}

// writeAudit writes the queued records in the transaction, each listing the other records the
// transaction changed (a delete's cascade, a rotation's new key: AuditRecord.SetOthers).
func (t *tx) writeAudit() error {
	for _, p := range t.audits {
		if p.err != nil {
			return p.err
		}
		p.rec.SetOthers(t.changes)
		if err := setJSON(t.txn, kAudit(p.rec.ID), p.rec); err != nil {
			return err
		}
	}
	return nil
}

// ListAudit returns one page of the audit records matching f, newest first, and the number
// matching in all. Only the keys of f's time range are read; a selection by time alone is
// counted by its keys and only its page decoded, and with other filters a record that cannot
// match (keys.AuditFilter.MayMatch) is not decoded.
func (s *Store) ListAudit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditRecord, int, error) {
	var (
		all  []*keys.AuditRecord
		n    int
		page = []*keys.AuditRecord{}
	)
	decode := func(key []byte, item *badger.Item) (*keys.AuditRecord, error) {
		var r keys.AuditRecord
		err := item.Value(func(b []byte) error {
			if !f.TimeOnly() && !f.MayMatch(b) {
				return nil
			}
			return json.Unmarshal(b, &r)
		})
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", key, err)
		}
		return &r, nil
	}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if f.TimeOnly() {
			// Count every key of the range; decode the page's records only.
			var items [][]byte
			err := scanAudit(txn, f.Since, f.Until, true, func(key []byte, _ *badger.Item) error {
				items = append(items, key)
				return nil
			})
			if err != nil {
				return err
			}
			n = len(items)
			lo, hi := f.Page(n)
			for _, key := range items[lo:hi] {
				item, err := txn.Get(key)
				if err != nil {
					return err
				}
				r, err := decode(key, item)
				if err != nil {
					return err
				}
				page = append(page, r)
			}
			return nil
		}
		return scanAudit(txn, f.Since, f.Until, false, func(key []byte, item *badger.Item) error {
			r, err := decode(key, item)
			if err != nil {
				return err
			}
			if r.ID != "" && f.Matches(r) {
				all = append(all, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, 0, err
	}
	if f.TimeOnly() {
		return page, n, nil
	}
	out, total := keys.SelectAudit(all, f)
	return out, total, nil
}

// scanAudit calls fn for the record keys whose time (Unix seconds) is in [since, until) (0:
// unbounded), newest first. keysOnly skips fetching values.
func scanAudit(txn *badger.Txn, since, until int64, keysOnly bool, fn func(key []byte, item *badger.Item) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Reverse = true
	opts.Prefix = []byte(pAudit)
	opts.PrefetchValues = !keysOnly
	it := txn.NewIterator(opts)
	defer it.Close()
	top := []byte(pAudit + "\xff")
	if until != 0 {
		top = kAudit(keys.AuditIDFloor(time.Unix(until, 0)))
	}
	var floor []byte
	if since != 0 {
		floor = kAudit(keys.AuditIDFloor(time.Unix(since, 0)))
	}
	for it.Seek(top); it.Valid(); it.Next() {
		key := it.Item().KeyCopy(nil)
		if floor != nil && string(key) < string(floor) {
			break
		}
		if err := fn(key, it.Item()); err != nil {
			return err
		}
	}
	return nil
}

// pruneChunk bounds the records one pruning transaction deletes.
const pruneChunk = 1000

// PruneAudit deletes the audit records beyond r: all but the newest r.MaxCount, and those
// older than r.MaxAge. It returns how many it deleted. Records are deleted in transactions of
// their own, in chunks, and never with a change: pruning is not an admin write and leaves no
// record.
func (s *Store) PruneAudit(ctx context.Context, r keys.AuditRetention) (int, error) {
	var doomed [][]byte
	err := s.view(ctx, func(txn *badger.Txn) error {
		n := 0
		var cutoff string
		if r.MaxAge > 0 {
			cutoff = string(kAudit(keys.AuditIDFloor(s.now().Add(-r.MaxAge))))
		}
		return scanAudit(txn, 0, 0, true, func(key []byte, _ *badger.Item) error {
			n++
			if (r.MaxCount > 0 && n > r.MaxCount) || (cutoff != "" && string(key) < cutoff) {
				doomed = append(doomed, key)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for len(doomed) > 0 {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		chunk := doomed[:min(len(doomed), pruneChunk)]
		doomed = doomed[len(chunk):]
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range chunk {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("prune audit: %w", err)
		}
		deleted += len(chunk)
	}
	return deleted, nil
}

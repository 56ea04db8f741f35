package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The audit log (docs/audit.md): every admin write queues one record with tx.audit, and update
// puts it among the write's own operations, so it commits in the same etcd Txn as the change
// (one more operation against --max-txn-ops). Records live under a/<record id>; ids begin with
// the time (each node's clock), so the key order is the time order and a time range is a key
// range. The watcher ignores the prefix: no cache depends on the log.

const pAudit = "a/"

func kAudit(id string) string { return pAudit + id }

// pendingAudit is a record queued by tx.audit, or the error building it.
type pendingAudit struct {
	rec *keys.AuditRecord
	err error
}

// audit queues the audit record of this write: action on the record kind/id, whose API form
// was before (nil on create) and is after (nil on delete). Call it once per admin write, in
// the method the admin API calls, not in helpers a cascade shares (a cascade is one record).
func (t *tx) audit(action, kind, id string, before, after any) {
	rec, err := keys.NewAuditRecord(t.ctx, t.s.now(), action, kind, id, before, after)
	t.audits = append(t.audits, pendingAudit{rec: rec, err: err})
}

// putAudit adds the queued records to the transaction's writes, each listing the other records
// the transaction changed (a delete's cascade, a rotation's new key: AuditRecord.SetOthers).
func (t *tx) putAudit() error {
	for _, p := range t.audits {
		if p.err != nil {
			return p.err
		}
		p.rec.SetOthers(t.changes)
		t.put(kAudit(p.rec.ID), encode(p.rec))
	}
	return nil
}

// auditPage is how many records one read of a listing fetches.
const auditPage = 500

// ListAudit returns one page of the audit records matching f, newest first, and the number
// matching in all. Only the keys of f's time range are read, at one revision; a selection by
// time alone is counted by etcd and only its first offset+limit records fetched, and with
// other filters a record that cannot match (keys.AuditFilter.MayMatch) is not decoded.
func (s *Store) ListAudit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditRecord, int, error) {
	if f.TimeOnly() {
		out, n, err := s.auditPage(ctx, f)
		return out, n, s.wrap(ctx, err)
	}
	var all []*keys.AuditRecord
	err := s.scanAudit(ctx, f.Since, f.Until, func(key string, val []byte) error {
		if !f.MayMatch(val) {
			return nil
		}
		var r keys.AuditRecord
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		if f.Matches(&r) {
			all = append(all, &r)
		}
		return nil
	})
	if err != nil {
		return nil, 0, s.wrap(ctx, err)
	}
	out, n := keys.SelectAudit(all, f)
	return out, n, nil
}

// auditPage is ListAudit for a selection by time alone: etcd counts the range, and one read
// at the same revision fetches the newest offset+limit records of it.
func (s *Store) auditPage(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditRecord, int, error) {
	lo, hi := s.auditRange(f.Since, f.Until)
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	count, err := s.cli.Get(rctx, lo, clientv3.WithRange(hi), clientv3.WithCountOnly())
	if err != nil {
		return nil, 0, err
	}
	n := int(count.Count)
	from, to := f.Page(n)
	out := []*keys.AuditRecord{}
	if from == to {
		return out, n, nil
	}
	resp, err := s.cli.Get(rctx, lo, clientv3.WithRange(hi), clientv3.WithRev(count.Header.Revision),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(to)))
	if err != nil {
		return nil, 0, err
	}
	for _, kv := range resp.Kvs[min(from, len(resp.Kvs)):] {
		var r keys.AuditRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, &r)
	}
	return out, n, nil
}

// auditRange is the etcd key range [lo, hi) of the records whose time (Unix seconds) is in
// [since, until) (0: unbounded).
func (s *Store) auditRange(since, until int64) (lo, hi string) {
	lo = s.prefix + pAudit
	if since != 0 {
		lo = s.prefix + kAudit(keys.AuditIDFloor(time.Unix(since, 0)))
	}
	hi = clientv3.GetPrefixRangeEnd(s.prefix + pAudit)
	if until != 0 {
		hi = s.prefix + kAudit(keys.AuditIDFloor(time.Unix(until, 0)))
	}
	return lo, hi
}

// scanAudit calls fn for the records whose time (Unix seconds) is in [since, until) (0:
// unbounded), newest first, reading pages of auditPage at the revision of the first.
func (s *Store) scanAudit(ctx context.Context, since, until int64, fn func(key string, val []byte) error) error {
	lo, hi := s.auditRange(since, until)
	var rev int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		opts := []clientv3.OpOption{
			clientv3.WithRange(hi), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
			clientv3.WithLimit(auditPage),
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(rctx, lo, opts...)
		cancel()
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		hi = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive: the next page is below it
	}
}

// PruneAudit deletes the audit records beyond r: all but the newest r.MaxCount, and those
// older than r.MaxAge, with one range delete (one etcd operation whatever the count). It
// returns how many it deleted. Pruning is not an admin write and leaves no record.
func (s *Store) PruneAudit(ctx context.Context, r keys.AuditRetention) (int, error) {
	lo := s.prefix + pAudit
	end := lo // exclusive end of the range to delete: nothing yet
	if r.MaxAge > 0 {
		end = s.prefix + kAudit(keys.AuditIDFloor(s.now().Add(-r.MaxAge)))
	}
	if r.MaxCount > 0 {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(rctx, lo, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(r.MaxCount)+1))
		cancel()
		if err != nil {
			return 0, s.wrap(ctx, err)
		}
		if len(resp.Kvs) > r.MaxCount {
			// The newest record beyond the count, and everything older, goes.
			if last := string(resp.Kvs[r.MaxCount].Key) + "\x00"; last > end {
				end = last
			}
		}
	}
	if end == lo {
		return 0, nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	resp, err := s.cli.Delete(rctx, lo, clientv3.WithRange(end))
	cancel()
	if err != nil {
		return 0, s.wrap(ctx, err)
	}
	return int(resp.Deleted), nil
}

package etcdstore

import (
	"context"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// last_used_at in cluster mode (docs/cluster.md#last_used_at): every node batches the uses it
// saw (keys.UsageRecorder) and flushes them here. Several nodes flushing the same keys must
// not become a storm of writes and retries, so a flush
//   - reads a whole chunk of keys in one round trip (one Txn of reads);
//   - writes each key under a compare of its own (a nested Txn per key, all in one Txn): a key
//     changed meanwhile (by an admin write or another node's flush) fails alone and is read
//     again, instead of the whole chunk being retried;
//   - skips a key whose stored last_used_at is already within the use resolution of the new
//     value (WithUseResolution; serve sets it to its flush interval), so a key used on every
//     node is written about once per resolution across the cluster, not once per node.

// WithUseResolution sets how much later than the stored last_used_at a use must be to be
// written (default 0: every later use is written, as on Badger). last_used_at then lags the
// last use by up to the resolution plus the flush interval.
func WithUseResolution(d time.Duration) Option { return func(s *Store) { s.useResolution = d } }

// RecordUse sets last_used_at of the keys in uses (key id → Unix seconds), keeping a later
// value already stored (or one within the use resolution) and skipping keys deleted
// meanwhile. It does not call the OnChange hooks, and other stores' watches skip these writes
// too (they change nothing but last_used_at).
func (s *Store) RecordUse(ctx context.Context, uses map[string]int64) error {
	ids := make([]string, 0, len(uses))
	for id := range uses {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// etcd counts a nested Txn's operations against what its parent leaves of --max-txn-ops:
	// n writes of one compare and one put each fit when n + 1 <= the limit.
	per := max(1, s.maxOps-1)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), per)]
		ids = ids[len(chunk):]
		for attempt := 1; len(chunk) > 0; attempt++ {
			if attempt > maxAttempts {
				return keys.Errorf(keys.ECONFLICT, "too many concurrent changes to %d keys' last_used_at, try again", len(chunk))
			}
			var err error
			if chunk, err = s.recordUseOnce(ctx, chunk, uses); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordUseOnce reads the keys ids and writes the uses they need, each under a compare of its
// own mod revision; it returns the ids whose compare failed (changed since the read).
func (s *Store) recordUseOnce(ctx context.Context, ids []string, uses map[string]int64) ([]string, error) {
	reads := make([]clientv3.Op, len(ids))
	for i, id := range ids {
		reads[i] = clientv3.OpGet(s.prefix + kKey(id))
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	resp, err := s.cli.Txn(rctx).Then(reads...).Commit()
	cancel()
	if err != nil {
		return nil, s.wrap(ctx, err)
	}
	resolution := int64(s.useResolution / time.Second)
	var (
		writes  []clientv3.Op
		written []string
	)
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // deleted meanwhile
		}
		rec, err := decodeKey(kvs[0].Value)
		if err != nil {
			return nil, &internalError{err}
		}
		at := uses[ids[i]]
		if rec.LastUsedAt != nil && *rec.LastUsedAt+resolution > at && resolution > 0 {
			continue // recent enough: another node (or an earlier flush) wrote it
		}
		if !rec.MarkUsed(at) {
			continue
		}
		key := s.prefix + kKey(ids[i])
		writes = append(writes, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)},
			[]clientv3.Op{clientv3.OpPut(key, encodeKey(rec, rec.Hash))}, nil))
		written = append(written, ids[i])
	}
	if len(writes) == 0 {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.timeout)
	wresp, err := s.cli.Txn(wctx).Then(writes...).Commit()
	cancel()
	if err != nil {
		return nil, s.wrap(ctx, err)
	}
	var again []string
	for i, r := range wresp.Responses {
		if !r.GetResponseTxn().GetSucceeded() {
			again = append(again, written[i])
		}
	}
	return again, nil
}

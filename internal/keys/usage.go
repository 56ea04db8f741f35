package keys

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// maxUsesPerTxn bounds the keys RecordUse writes in one transaction.
const maxUsesPerTxn = 1000

// RecordUse sets last_used_at of the keys in uses (key id → Unix seconds), keeping a later
// value already stored and skipping keys deleted meanwhile. It does not call the OnChange
// hooks: last_used_at plays no part in a decision, so no cache needs to forget anything.
func (s *Store) RecordUse(ctx context.Context, uses map[string]int64) error {
	ids := make([]string, 0, len(uses))
	for id := range uses {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxUsesPerTxn)]
		ids = ids[len(chunk):]
		err := s.update(ctx, func(t *tx) error {
			for _, id := range chunk {
				rec, err := getKey(t.txn, id)
				if ErrorCode(err) == ENOTFOUND {
					continue
				}
				if err != nil {
					return err
				}
				at := uses[id]
				if rec.LastUsedAt != nil && *rec.LastUsedAt >= at {
					continue
				}
				rec.LastUsedAt = &at
				if err := putKey(t.txn, rec, rec.Hash); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// UsageRecorder collects key uses in memory and writes them to the store in batches, so that
// last_used_at costs a map write per request rather than a synced disk write. A use is written
// at the next Flush: last_used_at lags by at most the flush interval, and uses of the last
// interval are lost only if the process dies without stopping (SIGKILL, a crash).
type UsageRecorder struct {
	store  *Store
	logger *slog.Logger

	mu      sync.Mutex
	pending map[string]int64
}

// NewUsageRecorder returns a recorder writing to store; logger receives failed flushes.
func NewUsageRecorder(store *Store, logger *slog.Logger) *UsageRecorder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &UsageRecorder{store: store, logger: logger, pending: map[string]int64{}}
}

// Record notes that key id was used at at. It is safe for concurrent use.
func (r *UsageRecorder) Record(id string, at time.Time) {
	sec := at.Unix()
	r.mu.Lock()
	if sec > r.pending[id] {
		r.pending[id] = sec
	}
	r.mu.Unlock()
}

// Flush writes the uses recorded so far. On failure they are kept for the next Flush.
func (r *UsageRecorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.pending
	r.pending = map[string]int64{}
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := r.store.RecordUse(ctx, batch)
	if err != nil {
		r.mu.Lock()
		for id, at := range batch {
			if at > r.pending[id] {
				r.pending[id] = at
			}
		}
		r.mu.Unlock()
	}
	return err
}

// Run flushes every interval until ctx ends, then flushes once more.
func (r *UsageRecorder) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.Flush(context.WithoutCancel(ctx)); err != nil {
				r.logger.Error("recording key use at shutdown", "err", err)
			}
			return
		case <-tick.C:
			if err := r.Flush(ctx); err != nil {
				r.logger.Warn("recording key use", "err", err)
			}
		}
	}
}

// pendingUses returns a copy of the uses not yet flushed (tests).
func (r *UsageRecorder) pendingUses() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.pending)
}

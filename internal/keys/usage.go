package keys

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// maxPendingUses bounds the keys whose use waits in memory for a flush: about 100 bytes each,
// so some 10 MB. It is reached only while flushes fail (on a full disk they are refused until
// space is back), or with more distinct keys used within one interval than that.
const maxPendingUses = 100_000

// UsageRecorder collects key uses in memory and writes them to the store in batches, so that
// last_used_at costs a map write per request rather than a synced disk write. A use is written
// at the next Flush: last_used_at lags by at most the flush interval, and uses of the last
// interval are lost only if the process dies without stopping (SIGKILL, a crash). While the
// store refuses writes (a full disk) the uses are held, and written at the first Flush after
// space is back. Held uses are bounded: a key already held is updated in place, but once
// maxPendingUses keys are waiting, the use of a further key is dropped (and counted): an
// older last_used_at is better than a process that grows without bound.
type UsageRecorder struct {
	store  UsageStore
	logger *slog.Logger

	mu      sync.Mutex
	pending map[string]int64
	dropped int64 // uses not held because pending was full, since the last report
	holding bool  // the last Flush was refused for lack of space
}

// UsageStore is what a UsageRecorder writes to (badgerstore.Store implements it).
type UsageStore interface {
	// RecordUse sets last_used_at of the keys in uses (key id → Unix seconds), keeping a later
	// value already stored and skipping keys deleted meanwhile. It does not call the OnChange
	// hooks: last_used_at plays no part in a decision. It returns EINSUFFICIENT while the
	// store refuses writes for lack of disk space.
	RecordUse(ctx context.Context, uses map[string]int64) error
}

// NewUsageRecorder returns a recorder writing to store; logger receives failed flushes.
func NewUsageRecorder(store UsageStore, logger *slog.Logger) *UsageRecorder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &UsageRecorder{store: store, logger: logger, pending: map[string]int64{}}
}

// Record notes that key id was used at at. It is safe for concurrent use.
func (r *UsageRecorder) Record(id string, at time.Time) {
	sec := at.Unix()
	r.mu.Lock()
	if prev, held := r.pending[id]; held {
		if sec > prev {
			r.pending[id] = sec
		}
	} else if len(r.pending) < maxPendingUses {
		r.pending[id] = sec
	} else {
		r.dropped++
	}
	r.mu.Unlock()
}

// Flush writes the uses recorded so far. On failure they are kept for the next Flush (so
// while a flush is failing, up to twice maxPendingUses keys may be held: the batch kept and
// the uses recorded meanwhile).
func (r *UsageRecorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.pending
	r.pending = map[string]int64{}
	dropped := r.dropped
	r.dropped = 0
	r.mu.Unlock()
	if dropped > 0 {
		r.logger.Warn("key uses not recorded: too many keys waiting for last_used_at", "dropped", dropped, "limit", maxPendingUses)
	}
	if len(batch) == 0 {
		return nil
	}
	err := r.store.RecordUse(ctx, batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		for id, at := range batch {
			if at > r.pending[id] {
				r.pending[id] = at
			}
		}
	}
	switch {
	case ErrorCode(err) == EINSUFFICIENT && !r.holding:
		r.holding = true
		r.logger.Warn("holding key uses in memory until disk space is back", "keys", len(r.pending), "err", err)
	case err == nil && r.holding:
		r.holding = false
		r.logger.Info("disk space is back: held key uses written", "keys", len(batch))
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
			// A full disk is logged once, when Flush starts holding uses, not every interval.
			if err := r.Flush(ctx); err != nil && ErrorCode(err) != EINSUFFICIENT {
				r.logger.Warn("recording key use", "err", err)
			}
		}
	}
}

// Pending returns a copy of the uses not yet written (key id → Unix seconds).
func (r *UsageRecorder) Pending() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.pending)
}

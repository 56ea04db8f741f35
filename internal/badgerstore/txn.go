package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The transaction runner: every write runs in update (disk-space guard, the caller re-check,
// retries on conflict, counters, change hooks), every read in view.

// maxAttempts bounds the retries of a transaction that lost a conflict to a concurrent one.
const maxAttempts = 10

// tx is one read-write transaction attempt and what it changed.
type tx struct {
	txn                     *badger.Txn
	changes                 []keys.Change
	dDomains, dUsers, dKeys int64

	// The audit log (audit.go): the write's context (caller, request id), its time, and the
	// records queued by audit, written by update in the same transaction once fn succeeds.
	ctx    context.Context
	now    time.Time
	audits []pendingAudit
}

func (t *tx) changed(kind, id string, counter *int64, delta int64) {
	t.changes = append(t.changes, keys.Change{Kind: kind, ID: id})
	if counter != nil {
		*counter += delta
	}
}

// update runs fn in a read-write transaction, retrying on conflicts, then applies the count
// deltas and calls the change hooks.
//
// A write made for an admin-API caller (CallerFrom(ctx) with a key) first re-reads the
// caller's key and user in the same transaction and is refused if either changed since the
// request was authorized (recheckCaller): a request judged before a revocation or demotion
// cannot write after it, and a concurrent change of those records makes this transaction
// conflict, so it is retried and judged again. Internal writes (bootstrap, usage) carry no
// caller and are not rechecked.
func (s *Store) update(ctx context.Context, fn func(*tx) error) error {
	caller := keys.CallerFrom(ctx)
	// Before Badger can fault on a full disk: EINSUFFICIENT (507), the store left as it was.
	if err := s.CheckSpace(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := &tx{ctx: ctx, now: s.now()}
		err := s.db.Update(func(txn *badger.Txn) error {
			t.txn = txn
			if err := recheckCaller(txn, caller, t.now); err != nil {
				return err
			}
			if err := fn(t); err != nil {
				return err
			}
			return t.writeAudit()
		})
		var e *keys.Error
		switch {
		case err == nil:
			s.nDomains.Add(t.dDomains)
			s.nUsers.Add(t.dUsers)
			s.nKeys.Add(t.dKeys)
			s.notify(t.changes)
			return nil
		case errors.As(err, &e):
			return err
		case errors.Is(err, badger.ErrConflict) && attempt < maxAttempts:
			continue
		case errors.Is(err, badger.ErrConflict):
			return keys.Errorf(keys.ECONFLICT, "too many concurrent changes, try again")
		case errors.Is(err, badger.ErrTxnTooBig):
			return keys.Errorf(keys.ECONFLICT, "too many records to change in one transaction: delete some of them first")
		default:
			return fmt.Errorf("store update: %w", err)
		}
	}
}

func (s *Store) view(ctx context.Context, fn func(*badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(fn)
	var e *keys.Error
	if err != nil && !errors.As(err, &e) {
		return fmt.Errorf("store read: %w", err)
	}
	return err
}

// recheckCaller re-reads, in the write transaction txn, the key and user of caller (as the
// authorization middleware put them in the request's context) and returns an error unless
// both are still as they were when the request was authorized: ErrUnknownKey if the key or
// its user is gone, ErrExpiredKey if the key has expired at now, ErrCallerChanged if the
// key's scopes, permissions or expires_at, or the user's sys_admin or support, differ. The
// policy judges a request once its headers arrive; this makes its judgement hold at the
// moment of the write. Reading both records also puts them in the transaction's read set, so
// a revocation committed before this write commits makes it conflict and be judged again.
//
// A nil caller, or one without a key, is not an admin-API request (bootstrap, usage flush,
// tests of the store) and is not rechecked.
func recheckCaller(txn *badger.Txn, caller *keys.Caller, now time.Time) error {
	return keys.RecheckCaller(caller, now,
		func(id string) (*keys.APIKey, error) { return getKey(txn, id) },
		func(id string) (*keys.User, error) { return getUser(txn, id) })
}

// OnChange registers fn to be called, synchronously and after the commit, for every record
// written or deleted (each record of a cascade included).
func (s *Store) OnChange(fn func(keys.Change)) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.hooks = append(s.hooks, fn)
}

func (s *Store) notify(changes []keys.Change) {
	if len(changes) == 0 {
		return
	}
	s.hookMu.Lock()
	hooks := slices.Clone(s.hooks)
	s.hookMu.Unlock()
	for _, h := range hooks {
		for _, c := range changes {
			h(c)
		}
	}
}

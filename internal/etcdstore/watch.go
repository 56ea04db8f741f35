package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Change hooks: the store's own writes call them before returning; the watch brings every
// other process's.

// OnChange registers fn to be called for every record written or deleted (each record of a
// cascade included): by this store's writes synchronously, after the commit and before the
// write returns; for writes made by other processes, from the watch goroutine as etcd
// reports them.
func (s *Store) OnChange(fn func(keys.Change)) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// OnResync registers fn to be called each time the store's view is confirmed again after it
// was not (confirm.go): after the watch broke or was restarted from the current revision
// because etcd no longer held its history (a compaction), or after etcd did not answer.
// Changes may have been missed meanwhile, so whatever was cached must be dropped. The view
// is reported confirmed (UnconfirmedSince) only after every hook has returned.
func (s *Store) OnResync(fn func()) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.resyncHooks = append(s.resyncHooks, fn)
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

// beginWrite registers a commit about to be sent; endWrite records the revision it committed
// at (0: none). The watcher waits for the commits in flight when events arrive, so that it
// knows whether their revisions are this store's own (already reported) or not.
func (s *Store) beginWrite() uint64 {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	s.ticket++
	s.inflight[s.ticket] = make(chan struct{})
	return s.ticket
}

func (s *Store) endWrite(ticket uint64, rev int64) {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	if rev > s.watched {
		s.own[rev] = struct{}{}
	}
	close(s.inflight[ticket])
	delete(s.inflight, ticket)
}

// watch follows the prefix from revision from until ctx ends, re-establishing the watch when
// it breaks, and starting again from the current revision when its history was compacted
// away. Every break makes the view unconfirmed (confirm.go); the heartbeat confirms it again,
// dropping the caches, once the new watch delivers.
func (s *Store) watch(ctx context.Context, from int64) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// WithRequireLeader: a member that loses its quorum cancels the watch ("no leader")
		// rather than keep it open on a copy that no longer changes.
		wctx := clientv3.WithRequireLeader(ctx)
		wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(),
			clientv3.WithRev(from), clientv3.WithPrevKV())
		s.setWatchErr(nil)
		s.conf.watchOpened(wctx)
		var broke error
		for resp := range wch {
			if resp.CompactRevision != 0 {
				broke = fmt.Errorf("history compacted past revision %d", from)
				s.logger.Warn("etcd watch history compacted: resyncing, caches dropped")
				s.watchBroke(broke)
				from = s.resync(ctx)
				break
			}
			if err := resp.Err(); err != nil {
				broke = err
				s.setWatchErr(err)
				s.logger.Warn("etcd watch", "err", err, "from", from)
				break
			}
			if len(resp.Events) > 0 {
				s.dispatch(resp.Events)
				from = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
				backoff = 100 * time.Millisecond
			}
			s.conf.delivered()
		}
		if ctx.Err() != nil {
			return
		}
		if broke == nil {
			broke = errors.New("the watch channel closed")
			s.setWatchErr(context.Canceled) // the channel closed: the connection broke
		}
		s.watchBroke(broke)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) setWatchErr(err error) {
	s.watching.Lock()
	s.watchErr = err
	s.watching.Unlock()
}

// resync reads the current revision (retrying until etcd answers or ctx ends) and returns the
// revision to watch from. The caches are dropped when the new watch is confirmed (confirm.go):
// changes made before it are unknown.
func (s *Store) resync(ctx context.Context) int64 {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(rctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			s.ownMu.Lock()
			s.watched = resp.Header.Revision
			clear(s.own)
			s.ownMu.Unlock()
			return resp.Header.Revision + 1
		}
		time.Sleep(time.Second)
	}
	return 0
}

// dispatch reports the changes of events (in revision order) that this store did not make.
func (s *Store) dispatch(events []*clientv3.Event) {
	// Commits in flight now may be at these revisions: wait until each knows its own.
	s.ownMu.Lock()
	waits := make([]chan struct{}, 0, len(s.inflight))
	for _, ch := range s.inflight {
		waits = append(waits, ch)
	}
	s.ownMu.Unlock()
	for _, ch := range waits {
		<-ch
	}
	var changes []keys.Change
	s.ownMu.Lock()
	last := events[len(events)-1].Kv.ModRevision
	for _, ev := range events {
		if _, mine := s.own[ev.Kv.ModRevision]; mine {
			continue
		}
		if c, ok := s.changeOf(ev); ok {
			changes = append(changes, c)
		}
	}
	for rev := range s.own {
		if rev <= last {
			delete(s.own, rev)
		}
	}
	s.watched = max(s.watched, last)
	s.ownMu.Unlock()
	s.notify(changes)
}

// changeOf names the record an event wrote: records only (indexes change with them), and not
// a key update that changed nothing but last_used_at.
func (s *Store) changeOf(ev *clientv3.Event) (keys.Change, bool) {
	key := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
	kind, id, ok := strings.Cut(key, "/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return keys.Change{}, false
	}
	switch kind {
	case "d":
		return keys.Change{Kind: keys.KindDomain, ID: id}, true
	case "u":
		return keys.Change{Kind: keys.KindUser, ID: id}, true
	case "k":
		if ev.Type == mvccpb.PUT && ev.PrevKv != nil && onlyLastUsed(ev.PrevKv.Value, ev.Kv.Value) {
			return keys.Change{}, false
		}
		return keys.Change{Kind: keys.KindKey, ID: id}, true
	}
	return keys.Change{}, false
}

// onlyLastUsed reports whether two stored keys differ in last_used_at alone.
func onlyLastUsed(a, b []byte) bool {
	var ka, kb map[string]json.RawMessage
	if json.Unmarshal(a, &ka) != nil || json.Unmarshal(b, &kb) != nil || len(ka) != len(kb) {
		return false
	}
	for f, va := range ka {
		if f == "last_used_at" {
			continue
		}
		if vb, ok := kb[f]; !ok || !bytes.Equal(va, vb) {
			return false
		}
	}
	return true
}

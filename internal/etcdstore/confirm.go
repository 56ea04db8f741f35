package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Confirmation: whether this store knows of every change committed in etcd, so that what a
// node cached from it may be served (docs/cluster.md#caches-and-the-watch).
//
// The watch alone cannot say so: etcd's client re-opens a broken watch stream by itself and
// reports nothing, and a member that lost its quorum keeps a stream open on its stale copy
// until WithRequireLeader cancels it (a few election timeouts). So a heartbeat checks, every
// heartbeat interval, both halves: a linearizable read (etcd has a quorum and this client
// reaches it) and a progress request on the watch stream, answered on the stream itself (the
// watch is open and delivering). The view is confirmed as of the moment the last successful
// check was sent. When a check fails, or the watch breaks, the view is unconfirmed since that
// moment; when a check succeeds again, the OnResync hooks run (every cache drops what it
// holds, since the changes missed meanwhile are unknown) and only then is the view confirmed.

// DefaultHeartbeat is how often the view is checked, and how long one check may take.
const DefaultHeartbeat = 500 * time.Millisecond

// WithHeartbeat sets the interval of the confirmation checks (default DefaultHeartbeat); a
// check that takes longer than the interval fails.
func WithHeartbeat(d time.Duration) Option { return func(s *Store) { s.heartbeat = d } }

// Confirmation is the state of a store's view of etcd.
type Confirmation struct {
	// Confirmed is true while every change committed in etcd is known to reach the OnChange
	// hooks (the watch delivers and etcd has a quorum).
	Confirmed bool
	// Since is, when not Confirmed, the last moment the view was confirmed: changes committed
	// after it may have been missed.
	Since time.Time
	// Reason says why the view is not confirmed (nil when it is).
	Reason error
	// Unreachable is true when the reason is that etcd did not answer a read (no connection,
	// no quorum): reads would fail too, not only the watch.
	Unreachable bool
}

// confirmer holds a store's confirmation state.
type confirmer struct {
	// since is the Unix nanoseconds of Confirmation.Since while unconfirmed, 0 while confirmed:
	// read on every cache lookup, so an atomic.
	since atomic.Int64
	// heard is kicked after the watch delivered a response (and dispatched its events).
	heard chan struct{}

	mu          sync.Mutex
	reason      error
	unreachable bool
	lastOK      time.Time       // when the last successful check was sent
	watchUp     bool            // a watch is open and has not failed since
	epoch       uint64          // moves on every watch break
	wctx        context.Context // the open watch's context: RequestProgress goes to its stream
	asking      atomic.Bool     // a progress request is under way
}

func newConfirmer(now time.Time) *confirmer {
	return &confirmer{heard: make(chan struct{}, 1), lastOK: now}
}

// UnconfirmedSince returns the zero time while the view is confirmed, else the last moment it
// was (cache.Confirmer).
func (s *Store) UnconfirmedSince() time.Time {
	if n := s.conf.since.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Confirmation returns the state of the store's view of etcd, for /health.
func (s *Store) Confirmation() Confirmation {
	c := s.conf
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.since.Load()
	if n == 0 {
		return Confirmation{Confirmed: true}
	}
	return Confirmation{Since: time.Unix(0, n), Reason: c.reason, Unreachable: c.unreachable}
}

// Unreachable returns, while the last check found etcd not answering a read, why (wrapping
// ErrUnavailable); else nil. A reader may then fail at once rather than wait for the request
// timeout: the next check, within a heartbeat, notices when etcd is back.
func (s *Store) Unreachable() error {
	c := s.conf
	if c.since.Load() == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.unreachable {
		return nil
	}
	return c.reason
}

// watchOpened records that a watch was opened with ctx (not yet that it delivers).
func (c *confirmer) watchOpened(ctx context.Context) {
	c.mu.Lock()
	c.watchUp, c.wctx = true, ctx
	c.mu.Unlock()
}

// delivered records that the watch delivered a response.
func (c *confirmer) delivered() {
	select {
	case c.heard <- struct{}{}:
	default:
	}
}

// broke records that the watch failed: the view is unconfirmed from the last check that
// succeeded, and stays so until a check succeeds on a new watch.
func (s *Store) watchBroke(err error) {
	c := s.conf
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchUp, c.wctx = false, nil
	c.epoch++
	s.unconfirm(fmt.Errorf("etcd watch broken: %w", err), false)
}

// unconfirm marks the view unconfirmed since the last successful check (c.mu held).
func (s *Store) unconfirm(reason error, unreachable bool) {
	c := s.conf
	if c.since.Load() == 0 {
		c.since.Store(c.lastOK.UnixNano())
		s.logger.Warn("etcd view unconfirmed: cached entries are served only within --stale-grace of the last confirmation",
			"since", c.lastOK, "reason", reason)
	}
	c.reason, c.unreachable = reason, unreachable
}

// heartbeatLoop checks the view every heartbeat interval until ctx ends.
func (s *Store) heartbeatLoop(ctx context.Context) {
	defer close(s.hbDone)
	tick := time.NewTicker(s.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.checkView(ctx)
	}
}

// errNoWatch is the reason while no watch is open (between a break and the next attempt).
var errNoWatch = errors.New("etcd watch not open")

// checkView runs one check and records its outcome. The read is made even while no watch is
// open, so that the reason says whether etcd itself answers (Unreachable: reads fail at once)
// or only the watch is down (reads go to etcd).
func (s *Store) checkView(ctx context.Context) {
	c := s.conf
	sent := time.Now()
	c.mu.Lock()
	up, wctx, epoch := c.watchUp, c.wctx, c.epoch
	c.mu.Unlock()
	if up {
		// Responses heard before this check prove nothing about now.
		select {
		case <-c.heard:
		default:
		}
		if c.asking.CompareAndSwap(false, true) {
			// RequestProgress waits for the stream's loop to take the request; it must use the
			// watch's own context (same stream), so it runs apart and the wait below bounds it.
			go func() {
				defer c.asking.Store(false)
				_ = s.cli.RequestProgress(wctx)
			}()
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.heartbeat)
	defer cancel()
	_, err := s.cli.Get(cctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		err = s.wrap(ctx, err)
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		c.mu.Lock()
		s.unconfirm(fmt.Errorf("etcd unreachable: %w", err), true)
		c.mu.Unlock()
		return
	}
	if !up {
		c.mu.Lock()
		if c.since.Load() == 0 || c.unreachable {
			s.unconfirm(errNoWatch, false)
		} // else keep the watch's own reason (why it broke)
		c.mu.Unlock()
		return
	}
	select {
	case <-c.heard:
	case <-cctx.Done():
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		s.unconfirm(fmt.Errorf("etcd watch broken: no progress from the watch within %v", s.heartbeat), false)
		c.mu.Unlock()
		return
	}
	s.confirmed(sent, epoch)
}

// confirmed records a successful check sent at sent on the watch of epoch. Coming back from
// unconfirmed, it runs the OnResync hooks first (the caches drop everything), and confirms
// only if the watch did not break meanwhile.
func (s *Store) confirmed(sent time.Time, epoch uint64) {
	c := s.conf
	c.mu.Lock()
	if c.epoch != epoch {
		c.mu.Unlock()
		return
	}
	if c.since.Load() == 0 {
		c.lastOK = sent
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	s.runResyncHooks()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	s.logger.Info("etcd view confirmed again: caches dropped", "unconfirmed_since", time.Unix(0, c.since.Load()))
	c.lastOK = sent
	c.reason, c.unreachable = nil, false
	c.since.Store(0)
}

func (s *Store) runResyncHooks() {
	s.hookMu.Lock()
	hooks := slices.Clone(s.resyncHooks)
	s.hookMu.Unlock()
	for _, h := range hooks {
		h()
	}
}

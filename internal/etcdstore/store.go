package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// *Store is a keys.Service: a compile-time check.
var _ keys.Service = (*Store)(nil)

// DefaultPrefix is the etcd key prefix under which the store keeps everything.
const DefaultPrefix = "/keyauthz/"

// DefaultMaxTxnOps is etcd's default --max-txn-ops: the most compares, and the most
// operations, one transaction may hold.
const DefaultMaxTxnOps = 128

// DefaultRequestTimeout bounds each request to etcd: past it, etcd counts as unreachable.
const DefaultRequestTimeout = 5 * time.Second

// ErrUnavailable is wrapped by the errors of operations that could not reach etcd (no
// connection, no leader, no answer within the request timeout). keys has no code for it
// yet, so keys.ErrorCode says EINTERNAL; the HTTP side should answer 503.
var ErrUnavailable = &keys.Error{Code: keys.EUNAVAILABLE, Message: "store unavailable: etcd cannot be reached"}

// Store is the etcd-backed store of domains, users and keys. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	now     func() time.Time
	logger  *slog.Logger
	maxOps  int
	timeout time.Duration

	hookMu      sync.Mutex
	hooks       []func(keys.Change)
	resyncHooks []func()

	// Own writes in flight and committed, for the watcher's dedupe (watch.go).
	ownMu    sync.Mutex
	ticket   uint64
	inflight map[uint64]chan struct{}
	own      map[int64]struct{}
	watched  int64 // the last revision the watcher dispatched

	countMu    sync.Mutex
	lastCounts [3]int

	loadRev  int64
	cancel   context.CancelFunc
	done     chan struct{}
	watching sync.Mutex // guards watchErr
	watchErr error

	// Confirmation of the view (confirm.go).
	conf      *confirmer
	heartbeat time.Duration
	hbDone    chan struct{}

	useResolution time.Duration // usage.go
}

// Option configures Open.
type Option func(*Store)

// WithPrefix sets the etcd key prefix (default DefaultPrefix); a missing trailing "/" is added.
func WithPrefix(p string) Option {
	return func(s *Store) {
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		s.prefix = p
	}
}

// WithClock sets the clock used for timestamps and for the expires_at validation.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLogger routes the watcher's warnings to l (by default they are discarded).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.logger = l } }

// WithMaxTxnOps tells the store etcd's --max-txn-ops (default DefaultMaxTxnOps).
func WithMaxTxnOps(n int) Option { return func(s *Store) { s.maxOps = n } }

// WithRequestTimeout bounds each request to etcd (default DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option { return func(s *Store) { s.timeout = d } }

// Open returns a store on the etcd cluster cli talks to (the caller builds cli with the
// endpoints, TLS and auth it needs, and closes it after Close). It reads the current revision
// and watches the prefix from there, so that changes made by other processes reach the
// OnChange hooks. It fails with ErrUnavailable (wrapped) when etcd cannot be reached.
func Open(ctx context.Context, cli *clientv3.Client, opts ...Option) (*Store, error) {
	s := &Store{
		cli: cli, prefix: DefaultPrefix, now: time.Now, logger: slog.New(slog.DiscardHandler),
		maxOps: DefaultMaxTxnOps, timeout: DefaultRequestTimeout, heartbeat: DefaultHeartbeat,
		inflight: map[uint64]chan struct{}{}, own: map[int64]struct{}{},
	}
	for _, o := range opts {
		o(s)
	}
	// Confirmed from this read on: nothing is cached yet, and the watch starts after it.
	s.conf = newConfirmer(time.Now())
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	resp, err := cli.Get(rctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", s.wrap(ctx, err))
	}
	s.loadRev = resp.Header.Revision
	s.watched = s.loadRev
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done, s.hbDone = wcancel, make(chan struct{}), make(chan struct{})
	go s.watch(wctx, s.loadRev+1)
	go s.heartbeatLoop(wctx)
	return s, nil
}

// Close stops the watch and the heartbeat. It does not close the client.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	<-s.hbDone
	return nil
}

// Ping reports whether etcd answers (for /health): nil, or ErrUnavailable wrapped.
func (s *Store) Ping(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.cli.Get(rctx, s.prefix+"ping", clientv3.WithCountOnly())
	return s.wrap(ctx, err)
}

// WatchErr returns why the watch is down, or nil while it runs.
func (s *Store) WatchErr() error {
	s.watching.Lock()
	defer s.watching.Unlock()
	return s.watchErr
}

// Counts returns the number of domains, users and keys stored, from etcd's count-only ranges
// (no record is read), all three at one revision. If etcd cannot be reached it returns the
// last counts it read.
func (s *Store) Counts(ctx context.Context) (domains, users, apiKeys int) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(
		clientv3.OpGet(s.prefix+pDomain, clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(s.prefix+pUser, clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(s.prefix+pKey, clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if err != nil {
		s.logger.Warn("counting records in etcd", "err", err)
	} else {
		for i, r := range resp.Responses {
			s.lastCounts[i] = int(r.GetResponseRange().Count)
		}
	}
	return s.lastCounts[0], s.lastCounts[1], s.lastCounts[2]
}

// wrap maps an etcd client error: nil, a *keys.Error as is, ctx's own error when the caller
// gave up, ErrUnavailable (wrapped) when etcd could not be reached, else an internal error.
func (s *Store) wrap(ctx context.Context, err error) error {
	var e *keys.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e), errors.Is(err, ErrUnavailable), errors.As(err, new(*internalError)):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case unreachable(err):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	default:
		return &internalError{err}
	}
}

// internalError is a store fault (EINTERNAL), wrapped once.
type internalError struct{ err error }

func (e *internalError) Error() string { return "etcd store: " + e.err.Error() }
func (e *internalError) Unwrap() error { return e.err }

func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(errors.Unwrap(err)) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	// Without quorum a member answers some requests with its own timeouts: the etcdserver errors
	// below, or a bare gRPC Unknown "context deadline exceeded" (seen from etcd 3.4 when two of
	// three members were down). Each means "etcd cannot answer now", not a fault of ours: a 503.
	switch rpctypes.Error(err) {
	case rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrNotCapable, rpctypes.ErrStopped:
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "no leader") ||
		(status.Code(err) == codes.Unknown && strings.Contains(msg, context.DeadlineExceeded.Error()))
}

package authz

import (
	"hash/maphash"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// Per-key rate limits (docs/limits.md#rate-limit): a token bucket per key with a rate_limit,
// kept in this node's memory and taken from after the policy allows, so that only requests the
// key may make count, cached decisions included. In cluster mode each node keeps its own
// buckets: a key may make up to its limit on every node.

// MsgRateLimited is the message of the 429 deny of a key over its rate limit.
const MsgRateLimited = "rate limit exceeded"

// DefaultRateLimitBuckets bounds the buckets a node keeps unless told otherwise (Options):
// about 300 bytes each, so some 20 MB at the bound.
const DefaultRateLimitBuckets = 1 << 16

// limiterShards spreads the buckets over locks, so that concurrent decisions of different keys
// rarely wait for each other.
const limiterShards = 32

// limiter holds the buckets of the keys with a rate limit, at most max in all.
type limiter struct {
	seed     maphash.Seed
	perShard int
	shards   [limiterShards]limiterShard
	limited  atomic.Uint64 // requests refused
	buckets  atomic.Int64  // buckets held
}

type limiterShard struct {
	mu sync.Mutex
	m  map[string]*bucket
}

// bucket is one key's token bucket, with what it was made for: a change to the key (its
// updated_at moves on every update, a rate limit changed included) gives the key a new, full
// bucket.
type bucket struct {
	lim       *rate.Limiter
	limit     keys.RateLimit
	updatedAt int64
}

func newLimiter(maxBuckets int) *limiter {
	if maxBuckets <= 0 {
		maxBuckets = DefaultRateLimitBuckets
	}
	l := &limiter{seed: maphash.MakeSeed(), perShard: max(1, maxBuckets/limiterShards)}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*bucket)
	}
	return l
}

// take takes a token from k's bucket at now. It returns false and how long until a token is
// due when the bucket is empty.
func (l *limiter) take(k *keys.APIKey, now time.Time) (ok bool, retryAfter time.Duration) {
	rl := *k.RateLimit
	s := &l.shards[maphash.String(l.seed, k.ID)%limiterShards]
	s.mu.Lock()
	b := s.m[k.ID]
	if b == nil || b.limit != rl || b.updatedAt != k.UpdatedAt {
		if b == nil {
			if len(s.m) >= l.perShard {
				l.evict(s, now)
			}
			l.buckets.Add(1)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(rl.Rate), rl.Burst), limit: rl, updatedAt: k.UpdatedAt}
		s.m[k.ID] = b
	}
	s.mu.Unlock()
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	l.limited.Add(1)
	// The time until one token is due, not a reservation: a client that retries earlier is
	// simply refused again.
	missing := 1 - b.lim.TokensAt(now)
	wait := math.Ceil(missing / rl.Rate * float64(time.Second))
	// A tiny rate (1e-300 a second is valid) puts the next token beyond what a Duration
	// holds, and an out-of-range conversion is not defined (on amd64 it is negative, which
	// would read as "retry in 1 s"): say the longest wait instead.
	if !(wait < float64(maxRetryAfter)) {
		return false, maxRetryAfter
	}
	return false, time.Duration(wait)
}

// maxRetryAfter bounds the wait a refusal reports: a year, far beyond any limit a key needs.
const maxRetryAfter = 365 * 24 * time.Hour

// evict makes room in a full shard (its lock held). A bucket that has refilled to its burst is
// the same as a new one, so dropping it loses nothing; those go first. If that frees less than
// a quarter of the shard (more keys are busy at once than the bound allows), arbitrary buckets
// go too, and their keys start again with a full bucket: the bound on memory wins over the
// precision of the limit, and docs/limits.md says so.
func (l *limiter) evict(s *limiterShard, now time.Time) {
	n := len(s.m)
	for id, b := range s.m {
		if b.lim.TokensAt(now) >= float64(b.limit.Burst) {
			delete(s.m, id)
		}
	}
	for id := range s.m {
		if len(s.m) <= l.perShard*3/4 {
			break
		}
		delete(s.m, id)
	}
	l.buckets.Add(int64(len(s.m) - n))
}

// limit applies the rate limit of res's key to an allow: over it, the allow becomes a 429 deny
// with the time after which to retry.
func (a *Authorizer) limit(res *Result) {
	if !res.Decision.Allow || res.Key == nil || res.Key.RateLimit == nil {
		return
	}
	ok, retry := a.limiter.take(res.Key, a.now())
	if ok {
		return
	}
	res.Decision = opa.Decision{
		Status: http.StatusTooManyRequests, Message: MsgRateLimited,
		Route: res.Decision.Route, Permissions: res.Decision.Permissions,
	}
	res.RetryAfter = retry
}

// RateLimited returns the number of requests refused over a key's rate limit since start.
func (a *Authorizer) RateLimited() uint64 { return a.limiter.limited.Load() }

// RateLimitBuckets returns the number of rate-limit buckets this node holds.
func (a *Authorizer) RateLimitBuckets() int64 { return a.limiter.buckets.Load() }

// RetryAfterSeconds is a Retry-After header's value for d: whole seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

package cache

import (
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// DecisionKey is everything a decision depends on: the normalised request, the presented key
// (id and source; its records are fixed by the id at a store generation), the policy that
// decided and the store generation the key, user and domain were read at.
type DecisionKey struct {
	Method, Path, Host, Protocol string
	// CrossSite is the request's cross_site input: the same request made cross-site may be
	// refused where a same-site one is allowed.
	CrossSite bool
	// Query is the canonical encoding of the request's query (url.Values.Encode, the api-key
	// parameter removed); "" when there is none.
	Query  string
	KeyID  string
	Source string
	Policy opa.Policy
	Gen    uint64
}

// Decisions is a bounded LRU of decisions. It is safe for concurrent use. A nil *Decisions
// caches nothing.
type Decisions struct {
	lru          *lru.Cache[DecisionKey, decisionEntry]
	hits, misses atomic.Uint64
}

type decisionEntry struct {
	d opa.Decision
	// expiresAt is the key's expires_at (Unix seconds; 0 with hasExpiry false: never).
	expiresAt int64
	hasExpiry bool
}

// NewDecisions returns a decision cache of size entries, or nil (no caching) when size <= 0.
func NewDecisions(size int) *Decisions {
	if size <= 0 {
		return nil
	}
	c, _ := lru.New[DecisionKey, decisionEntry](size)
	return &Decisions{lru: c}
}

// Get returns the decision cached for k, unless it was made with a key that has expired at now.
func (c *Decisions) Get(k *DecisionKey, now time.Time) (opa.Decision, bool) {
	if c == nil {
		return opa.Decision{}, false
	}
	e, ok := c.lru.Get(*k)
	if !ok || e.hasExpiry && e.expiresAt <= now.Unix() {
		c.misses.Add(1)
		return opa.Decision{}, false
	}
	c.hits.Add(1)
	return e.d, true
}

// Add caches d for k; expiresAt is the presented key's expires_at (nil: never, or no key).
func (c *Decisions) Add(k *DecisionKey, d opa.Decision, expiresAt *int64) {
	if c == nil {
		return
	}
	e := decisionEntry{d: d}
	if expiresAt != nil {
		e.expiresAt, e.hasExpiry = *expiresAt, true
	}
	c.lru.Add(*k, e)
}

// Stats returns the number of lookups answered from the cache and not.
func (c *Decisions) Stats() (hits, misses uint64) {
	if c == nil {
		return 0, 0
	}
	return c.hits.Load(), c.misses.Load()
}

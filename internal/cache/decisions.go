package cache

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// DecisionKey is what a decision is looked up by: the normalised request, the presented key
// (id and source) and the policy that decided. The versions of the records it was made from
// (the key, its user, its domain, the request host's domain) are not part of the key: they are
// kept with the decision (Deps) and checked on every lookup.
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
	// ClientIP is the request's client_ip input ("" when unknown): a key's allow-list
	// (docs/limits.md) may refuse one address and allow another.
	ClientIP string
	Policy   opa.Policy
}

// Decisions is an LRU of decisions bounded in bytes (see decisionCost). It is safe for
// concurrent use. A nil *Decisions caches nothing.
type Decisions struct {
	lru *sizedLRU[DecisionKey, decisionEntry]
	// store holds the versions an entry's deps are checked against.
	store        *Store
	hits, misses atomic.Uint64
}

type decisionEntry struct {
	d opa.Decision
	// expiresAt is the key's expires_at (Unix seconds; 0 with hasExpiry false: never).
	expiresAt int64
	hasExpiry bool
	// deps are the versions of the records the decision was made from.
	deps Deps
}

// DefaultDecisionBytes is the decision cache's bound unless told otherwise: about 35,000
// decisions on short paths. Measured with a flood of distinct 2 KB anonymous paths, the
// process peaked at 200 MB RSS with 32 MiB and 264 MB with 64 MiB (the GC lets the heap grow
// to twice what is live), against a target of 256 MB
// (docs/architecture.md#performance-targets).
const DefaultDecisionBytes = 32 << 20

// NewDecisions returns a decision cache of at most maxBytes (estimated: strings plus the
// cache's own bookkeeping per entry), or nil (no caching) when maxBytes <= 0. Decisions are
// cached with the Deps that store's AuthenticateDeps and DomainByHostDeps gave, and checked
// against store's versions; with a nil store only decisions without Deps are served.
func NewDecisions(maxBytes int64, store *Store) *Decisions {
	if maxBytes <= 0 {
		return nil
	}
	c := &Decisions{lru: newSizedLRU[DecisionKey, decisionEntry](maxBytes), store: store}
	if store != nil {
		store.onPurge(c.lru.Purge)
	}
	return c
}

// Get returns the decision cached for k, unless a record it was made from has changed since
// (its Deps), it was made with a key that has expired at now, or the store's view is
// unconfirmed beyond the stale grace (Store.Serving).
func (c *Decisions) Get(k *DecisionKey, now time.Time) (opa.Decision, bool) {
	if c == nil {
		return opa.Decision{}, false
	}
	if !c.store.Serving() {
		c.misses.Add(1)
		return opa.Decision{}, false
	}
	e, ok := c.lru.Get(*k)
	if !ok || e.hasExpiry && e.expiresAt <= now.Unix() || !c.store.Current(&e.deps) {
		c.misses.Add(1)
		return opa.Decision{}, false
	}
	c.hits.Add(1)
	return e.d, true
}

// Add caches d for k; deps are the versions of the records d was made from, and expiresAt is
// the presented key's expires_at (nil: never, or no key). Nothing is cached when deps are not
// cacheable (a change committed while they were read).
func (c *Decisions) Add(k *DecisionKey, deps *Deps, d opa.Decision, expiresAt *int64) {
	if c == nil || !deps.Cacheable() {
		return
	}
	e := decisionEntry{d: d, deps: *deps}
	if expiresAt != nil {
		e.expiresAt, e.hasExpiry = *expiresAt, true
	}
	ck := compactKey(k)
	c.lru.Add(ck, e, decisionCost(&ck, &e))
}

// Stats returns the number of lookups answered from the cache and not.
func (c *Decisions) Stats() (hits, misses uint64) {
	if c == nil {
		return 0, 0
	}
	return c.hits.Load(), c.misses.Load()
}

// Cost returns the estimated bytes held and the number of decisions cached.
func (c *Decisions) Cost() (bytes int64, entries int) {
	if c == nil {
		return 0, 0
	}
	return c.lru.Cost()
}

// decisionEntryOverhead is what an entry takes besides its strings: the LRU's list element
// (which holds the key and the value) and the map slot (a second copy of the key), with the
// slack of a map that has just doubled.
var decisionEntryOverhead = entryOverhead(unsafe.Sizeof(DecisionKey{}), unsafe.Sizeof(sizedValue[decisionEntry]{}))

// decisionCost is the estimated bytes of a cached decision. The key's strings are counted
// once (compactKey put them in one allocation); the decision's own strings are counted too,
// although they are usually the policy's and shared.
func decisionCost(k *DecisionKey, e *decisionEntry) int64 {
	n := decisionEntryOverhead + keyStringBytes(k) + int64(len(k.Policy.Revision))
	d := &e.d
	n += int64(len(d.Message) + len(d.Route.Resource) + len(d.Route.Access) + len(d.Route.Gate) + len(d.Permissions))
	return n
}

func keyStringBytes(k *DecisionKey) int64 {
	n := len(k.Path) + len(k.Host) + len(k.Protocol) + len(k.Query) + len(k.KeyID) + len(k.Source) + len(k.ClientIP)
	if internMethod(k.Method) == "" {
		n += len(k.Method)
	}
	return roundAlloc(int64(n))
}

// compactKey returns a copy of k whose strings are in one new allocation: the strings of a
// request may be slices of larger buffers (Go's request line, a header holding the whole key),
// and a cached slice would keep its whole buffer alive, secret included, uncounted.
func compactKey(k *DecisionKey) DecisionKey {
	c := *k
	method := internMethod(k.Method)
	var b strings.Builder
	b.Grow(int(keyStringBytes(k)))
	if method == "" {
		b.WriteString(k.Method)
	}
	for _, s := range [...]string{k.Path, k.Host, k.Protocol, k.Query, k.KeyID, k.Source, k.ClientIP} {
		b.WriteString(s)
	}
	all := b.String()
	next := func(n int) string {
		s := all[:n]
		all = all[n:]
		return s
	}
	if method == "" {
		method = next(len(k.Method))
	}
	c.Method = method
	c.Path, c.Host, c.Protocol = next(len(k.Path)), next(len(k.Host)), next(len(k.Protocol))
	c.Query, c.KeyID, c.Source = next(len(k.Query)), next(len(k.KeyID)), next(len(k.Source))
	c.ClientIP = next(len(k.ClientIP))
	return c
}

// internMethod returns the constant for a standard method, "" for any other.
func internMethod(m string) string {
	for _, s := range [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if m == s {
			return s
		}
	}
	return ""
}

// entryOverhead estimates the bytes an entry of a sizedLRU takes besides the data its key and
// value point to: simplelru's list element (three pointers, the key, the value, an unused
// expiry time and bucket), rounded up to an allocation size class, plus its map slot (the key
// and a pointer, one control byte) at the lowest load factor a Go map reaches (7/16, just after
// it doubles).
func entryOverhead(keySize, valueSize uintptr) int64 {
	elem := roundAlloc(int64(3*8 + keySize + valueSize + 24 + 8))
	slot := int64(keySize + 8 + 1)
	return elem + slot*16/7
}

// roundAlloc rounds n up as Go's allocator does, within 12.5 % (its size classes are at most
// that far apart above 128 bytes), to a multiple of 16 below.
func roundAlloc(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n <= 128 {
		return (n + 15) &^ 15
	}
	return n + n/8
}

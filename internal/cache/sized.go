package cache

import (
	"math"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// sizedLRU is a least-recently-used cache bounded by the bytes its entries take, as estimated
// by the caller for each entry (the cost passed to Add), and not only by their number: the
// strings of a cached request are chosen by the client, so a bound in entries alone lets a
// flood of long distinct paths take hundreds of megabytes.
//
// Why not ristretto (github.com/dgraph-io/ristretto/v2, in the module graph through Badger),
// which is bounded by cost: its Set is asynchronous and may be dropped, so a miss just filled
// is still a miss for the next request (the negative key cache exists to make the second
// lookup of an unknown id free); it keeps only a 64-bit hash of each key, so exactness would
// rest on a second hash for answers that are security decisions; items waiting in its set
// buffer (up to 32,768) hold their values outside MaxCost, so its bound in bytes is not a
// bound on memory under exactly the flood this type exists for; and every cache starts
// goroutines that each owner would have to stop. An exact, synchronous LRU with byte
// accounting is a few lines over golang-lru's simplelru.
type sizedLRU[K comparable, V any] struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[K, sizedValue[V]]
	used int64 // sum of the costs of the entries held; <= max between calls
	max  int64
}

type sizedValue[V any] struct {
	v    V
	cost int64
}

// newSizedLRU returns a cache of at most maxBytes (> 0) of estimated entry costs.
func newSizedLRU[K comparable, V any](maxBytes int64) *sizedLRU[K, V] {
	// The entry bound of simplelru is unused: bytes bound the cache.
	l, _ := simplelru.NewLRU[K, sizedValue[V]](math.MaxInt, nil)
	return &sizedLRU[K, V]{lru: l, max: maxBytes}
}

// Get returns the value cached for k and marks it recently used.
func (c *sizedLRU[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	e, ok := c.lru.Get(k)
	c.mu.Unlock()
	return e.v, ok
}

// Add caches v for k at cost bytes, replacing any value k had, and evicts the least recently
// used entries until the total cost is within the bound again. An entry costing more than the
// whole bound is not kept (and the value k had is dropped all the same: the caller has a newer
// one).
func (c *sizedLRU[K, V]) Add(k K, v V, cost int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(k); ok {
		c.lru.Remove(k)
		c.used -= old.cost
	}
	if cost > c.max {
		return
	}
	c.lru.Add(k, sizedValue[V]{v: v, cost: cost})
	c.used += cost
	for c.used > c.max {
		_, old, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.used -= old.cost
	}
}

// Cost returns the total estimated bytes of the entries held, and their number.
func (c *sizedLRU[K, V]) Cost() (bytes int64, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.lru.Len()
}

// Purge drops every entry. A nil cache holds none.
func (c *sizedLRU[K, V]) Purge() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.lru.Purge()
	c.used = 0
	c.mu.Unlock()
}

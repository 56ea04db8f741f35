package opa

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// OPA's evaluator keeps two caches per evaluation: the virtual cache (the value of each rule
// and of each function call already evaluated, so that a rule referenced twice is evaluated
// once) and the base cache (documents already read from the store). Its own implementations
// are tries of hash maps, built anew for every evaluation: about a third of the allocations of
// a whole decision (docs/performance.md). evalCaches implements both interfaces with flat,
// reusable slices and one reusable map, taken from a pool for one evaluation and returned
// after it, so that in the steady state they allocate nothing. They hold the same entries and
// answer the same way as OPA's, so a policy decides exactly as it does in a standalone OPA.
//
// The base cache also starts with the route table and its materialised index (the data at
// data.keyauthz.routes, read once when the policy is compiled), so that a decision reads them
// without a store read: the store holds the same, immutable value.

// evalCaches are the caches of one evaluation at a time, and its deadline (eval.go).
type evalCaches struct {
	virtual  virtualCache
	base     baseCache
	deadline deadline
}

var evalCachePool = sync.Pool{New: func() any {
	c := &evalCaches{}
	c.virtual.byHash = map[int]int{}
	c.reset(nil, nil)
	return c
}}

// getEvalCaches returns empty caches whose base cache holds value at ref (a ground data ref;
// nil for none). Return them with put once the evaluation is over.
func getEvalCaches(ref ast.Ref, value ast.Value) *evalCaches {
	c := evalCachePool.Get().(*evalCaches)
	c.reset(ref, value)
	return c
}

// put empties c (dropping its references to the evaluation's values) and returns it to the pool.
func (c *evalCaches) put() {
	c.reset(nil, nil)
	evalCachePool.Put(c)
}

func (c *evalCaches) reset(ref ast.Ref, value ast.Value) {
	c.virtual.reset()
	c.base.reset(ref, value)
	c.deadline.reset()
}

// virtualCache implements topdown.VirtualCache: a stack of frames over one list of entries.
// A frame is the entries from its start on; Get sees the top frame only, as OPA's does (a
// frame is pushed while `with` replaces a value, so that nothing computed under it leaks out).
// byHash maps a key's hash to its newest entry, and each entry links to the previous entry of
// the same hash, so that lookups do not scan.
type virtualCache struct {
	entries []virtualEntry
	frames  []int // the index of each frame's first entry; frames[0] == 0
	byHash  map[int]int
	arena   []*ast.Term // the keys' terms: Put's ref is the caller's and may be reused
}

type virtualEntry struct {
	hash      int
	key       ast.Ref
	value     *ast.Term
	undefined bool
	prev      int // the previous entry of the same hash, or -1
}

var _ topdown.VirtualCache = (*virtualCache)(nil)

func (c *virtualCache) reset() {
	clear(c.entries)
	c.entries = c.entries[:0]
	c.frames = append(c.frames[:0], 0)
	clear(c.byHash)
	clear(c.arena)
	c.arena = c.arena[:0]
}

// Push starts a new, empty frame.
func (c *virtualCache) Push() { c.frames = append(c.frames, len(c.entries)) }

// Pop drops the top frame and its entries. The bottom frame is never dropped.
func (c *virtualCache) Pop() {
	if len(c.frames) <= 1 {
		return
	}
	start := c.frames[len(c.frames)-1]
	for i := len(c.entries) - 1; i >= start; i-- {
		e := &c.entries[i]
		if e.prev >= 0 {
			c.byHash[e.hash] = e.prev
		} else {
			delete(c.byHash, e.hash)
		}
		*e = virtualEntry{}
	}
	c.entries = c.entries[:start]
	c.frames = c.frames[:len(c.frames)-1]
}

// find returns the index of ref's entry in the top frame, or -1.
func (c *virtualCache) find(ref ast.Ref, hash int) int {
	top := c.frames[len(c.frames)-1]
	i, ok := c.byHash[hash]
	for ok && i >= top {
		if c.entries[i].key.Equal(ref) {
			return i
		}
		i = c.entries[i].prev
		ok = i >= 0
	}
	return -1
}

// Get returns ref's value; (nil, true) when ref is recorded as undefined; (nil, false) when
// ref is not cached.
func (c *virtualCache) Get(ref ast.Ref) (*ast.Term, bool) {
	i := c.find(ref, refHash(ref))
	if i < 0 {
		return nil, false
	}
	e := &c.entries[i]
	if e.undefined {
		return nil, true
	}
	return e.value, false
}

// Put records ref's value; a nil value records ref as undefined. As in OPA's cache, a ref once
// recorded as undefined stays so in its frame, and keeps a value recorded before.
func (c *virtualCache) Put(ref ast.Ref, value *ast.Term) {
	h := refHash(ref)
	if i := c.find(ref, h); i >= 0 {
		if e := &c.entries[i]; value != nil {
			e.value = value
		} else {
			e.undefined = true
		}
		return
	}
	start := len(c.arena)
	c.arena = append(c.arena, ref...)
	prev, ok := c.byHash[h]
	if !ok {
		prev = -1
	}
	c.byHash[h] = len(c.entries)
	c.entries = append(c.entries, virtualEntry{
		hash:      h,
		key:       ast.Ref(c.arena[start:len(c.arena):len(c.arena)]),
		value:     value,
		undefined: value == nil,
		prev:      prev,
	})
}

// Keys returns the refs that have a value in the top frame.
func (c *virtualCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.entries[c.frames[len(c.frames)-1]:] {
		if e.value != nil {
			keys = append(keys, e.key)
		}
	}
	return keys
}

func refHash(ref ast.Ref) int {
	h := len(ref)
	for _, t := range ref {
		h = h*31 + t.Value.Hash()
	}
	return h
}

// baseCache implements topdown.BaseCache: documents read from the store, by ref. As in OPA's,
// a value put at a ref replaces every value below it, and Get finds a ref's value inside the
// value of its shortest cached prefix. An evaluation reads few documents, so it is a list;
// past maxBaseEntries it caches no more (the evaluator then reads the store again, which is
// slower, never different).
type baseCache struct {
	preRef   ast.Ref // a prefix whose value is known before the evaluation (nil: none)
	preValue ast.Value
	entries  []baseEntry
	arena    []*ast.Term
}

type baseEntry struct {
	key   ast.Ref
	value ast.Value
}

const maxBaseEntries = 64

var _ topdown.BaseCache = (*baseCache)(nil)

func (c *baseCache) reset(ref ast.Ref, value ast.Value) {
	c.preRef, c.preValue = ref, value
	clear(c.entries)
	c.entries = c.entries[:0]
	clear(c.arena)
	c.arena = c.arena[:0]
}

// Get returns the value at ref, or nil when no prefix of ref is cached or the value there
// has nothing at ref.
func (c *baseCache) Get(ref ast.Ref) ast.Value {
	if c.preRef != nil && ref.HasPrefix(c.preRef) {
		return find(c.preValue, ref[len(c.preRef):])
	}
	best := -1
	for i, e := range c.entries {
		if ref.HasPrefix(e.key) && (best < 0 || len(e.key) < len(c.entries[best].key)) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	e := c.entries[best]
	return find(e.value, ref[len(e.key):])
}

func find(v ast.Value, rest ast.Ref) ast.Value {
	if len(rest) == 0 {
		return v
	}
	x, err := v.Find(rest)
	if err != nil {
		return nil
	}
	return x
}

// Put caches value at ref, replacing what was cached below ref.
func (c *baseCache) Put(ref ast.Ref, value ast.Value) {
	if c.preRef != nil && ref.HasPrefix(c.preRef) {
		return // already known: the store holds the same value
	}
	kept := c.entries[:0]
	for _, e := range c.entries {
		if !e.key.HasPrefix(ref) {
			kept = append(kept, e)
		}
	}
	clear(c.entries[len(kept):])
	c.entries = kept
	if len(c.entries) >= maxBaseEntries {
		return
	}
	start := len(c.arena)
	c.arena = append(c.arena, ref...)
	c.entries = append(c.entries, baseEntry{key: ast.Ref(c.arena[start:len(c.arena):len(c.arena)]), value: value})
}

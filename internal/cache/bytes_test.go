package cache

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// TestDecisionsBoundedInBytes inserts about 40 times the bound in long distinct paths (a flood
// of anonymous requests): the accounted size never exceeds the bound, the newest decisions
// are kept and the oldest are gone.
func TestDecisionsBoundedInBytes(t *testing.T) {
	const bound = 256 << 10
	c := NewDecisions(bound, nil)
	allow := opa.Decision{Allow: true, Status: 200, Message: "ok"}
	var inserted int64
	key := func(i int) DecisionKey {
		return DecisionKey{Method: "GET", Path: fmt.Sprintf("/p/%d/%s", i, strings.Repeat("x", 2000)), Host: "localhost", Protocol: "http"}
	}
	for i := range 5_000 {
		k := key(i)
		c.Add(&k, &Deps{}, allow, nil)
		inserted += int64(len(k.Path))
		if used, _ := c.Cost(); used > bound {
			t.Fatalf("after %d inserts the cache accounts %d bytes, over its bound of %d", i+1, used, bound)
		}
	}
	used, n := c.Cost()
	if inserted < 30*bound || n == 0 || used < bound/2 {
		t.Fatalf("inserted %d bytes; the cache holds %d entries, %d bytes (bound %d)", inserted, n, used, bound)
	}
	newest, oldest := key(4_999), key(0)
	if _, ok := c.Get(&newest, time.Now()); !ok {
		t.Error("the newest decision was evicted")
	}
	if _, ok := c.Get(&oldest, time.Now()); ok {
		t.Error("the oldest decision is still held")
	}
	// One entry larger than the whole bound is not kept, and does not flush the others.
	huge := DecisionKey{Method: "GET", Path: strings.Repeat("y", bound)}
	c.Add(&huge, &Deps{}, allow, nil)
	if _, ok := c.Get(&huge, time.Now()); ok {
		t.Error("an entry larger than the bound was kept")
	}
	if _, ok := c.Get(&newest, time.Now()); !ok {
		t.Error("an entry larger than the bound flushed the cache")
	}
}

// TestStoreCachesBoundedInBytes floods the unknown-id and host caches with distinct values
// and checks each stays within its bound in bytes.
func TestStoreCachesBoundedInBytes(t *testing.T) {
	ctx := t.Context()
	src, key, _ := newSource(t)
	o := Options{KeyBytes: 4 << 10, UnknownKeyBytes: 8 << 10, HostBytes: 8 << 10}
	c := New(src, o)
	now := time.Now()
	if _, err := c.Authenticate(ctx, key, now); err != nil {
		t.Fatal(err)
	}
	for i := range 2_000 {
		unknown := fmt.Sprintf("%032x.", i) + strings.Repeat("A", 43)
		_, _ = c.Authenticate(ctx, unknown, now)
		host := fmt.Sprintf("h%d.%s.example", i, strings.Repeat("z", 200))
		_, _ = c.DomainByHost(ctx, host)
		cost := c.Cost()
		if cost.KeyBytes > o.KeyBytes || cost.UnknownKeyBytes > o.UnknownKeyBytes || cost.HostBytes > o.HostBytes {
			t.Fatalf("after %d distinct lookups: %+v, over the bounds %+v", i+1, cost, o)
		}
	}
	cost := c.Cost()
	if cost.Keys != 1 || cost.UnknownKeys == 0 || cost.Hosts == 0 || cost.UnknownKeys >= 2_000 || cost.Hosts >= 2_000 {
		t.Errorf("entries held: %+v", cost)
	}
}

// TestEntryCostCoversMemory checks the estimates against the heap: filling each cache with
// many entries grows the live heap by no more than the bytes the cache accounts. (Memory, not
// time: a GC before each reading makes it deterministic enough; the estimates have margin.)
func TestEntryCostCoversMemory(t *testing.T) {
	const n = 20_000
	measure := func(t *testing.T, fill func() (accounted int64)) {
		t.Helper()
		before := liveHeap()
		accounted := fill()
		after := liveHeap()
		grown := int64(after) - int64(before)
		t.Logf("%d entries: heap grew %d bytes (%d per entry), accounted %d (%d per entry)",
			n, grown, grown/n, accounted, accounted/n)
		if grown > accounted {
			t.Errorf("heap grew %d bytes, more than the %d accounted", grown, accounted)
		}
	}
	t.Run("decisions", func(t *testing.T) {
		var c *Decisions
		measure(t, func() int64 {
			c = NewDecisions(1<<40, nil)
			d := opa.Decision{Status: 403, Message: "missing scope", Route: opa.Route{Resource: "systems", Access: "read", Gate: ""}}
			for i := range n {
				// Built on the fly, as a request's strings are: only the compacted copy stays.
				k := DecisionKey{Method: "GET", Path: fmt.Sprintf("/api/engine/v2/systems/sys-%d/zones", i),
					Host: "localhost", Protocol: "http", Query: "a=1", KeyID: fmt.Sprintf("%032x", i), Source: "header"}
				c.Add(&k, &Deps{}, d, nil)
			}
			used, _ := c.Cost()
			return used
		})
		runtime.KeepAlive(c)
	})
	t.Run("keys", func(t *testing.T) {
		var s *Store
		measure(t, func() int64 {
			s = &Store{keys: newSizedLRU[string, *keyEntry](1 << 40)}
			for i := range n {
				exp := int64(i)
				id := fmt.Sprintf("%032x", i)
				e := &keyEntry{hash: strings.Repeat("ab", 64), hasDigest: true, cred: newCred(&keys.AuthResult{
					Key: &keys.APIKey{ID: id, Name: fmt.Sprintf("key %d", i), Scopes: []string{"systems.read", "zones", "public.read"},
						UserID: fmt.Sprintf("user-%d", i), AuthorityID: "domain-1", ExpiresAt: &exp, LastUsedAt: &exp},
					User: &keys.User{ID: fmt.Sprintf("user-%d", i), AuthorityID: "domain-1", Name: "panel",
						Email: fmt.Sprintf("panel%d@acme.example.com", i), Groups: []string{"staff"}},
					Domain: &keys.Domain{ID: "domain-1", Name: "Acme", Domain: "acme.example.com"},
				})}
				e.cost = keyEntryCost(e)
				s.keys.Add(strings.Clone(id), e, e.cost)
			}
			return s.Cost().KeyBytes
		})
		runtime.KeepAlive(s)
	})
	t.Run("unknown ids and hosts", func(t *testing.T) {
		var s *Store
		measure(t, func() int64 {
			s = &Store{neg: newSizedLRU[string, dep](1 << 40), hosts: newSizedLRU[string, *hostEntry](1 << 40)}
			for i := range n {
				s.neg.Add(fmt.Sprintf("%032x", i), dep{slot: 1, ver: 1}, negEntryCost)
				host := fmt.Sprintf("host-%d.example.com", i)
				s.hosts.Add(host, &hostEntry{err: keys.ErrUnknownKey}, hostEntryCost(host, nil))
			}
			c := s.Cost()
			return c.UnknownKeyBytes + c.HostBytes
		})
		runtime.KeepAlive(s)
	})
	t.Run("hosts with a domain", func(t *testing.T) {
		var s *Store
		measure(t, func() int64 {
			s = &Store{hosts: newSizedLRU[string, *hostEntry](1 << 40)}
			for i := range n {
				host := fmt.Sprintf("host-%d.example.com", i)
				d := &keys.Domain{ID: fmt.Sprintf("domain-%d", i), Name: fmt.Sprintf("Domain %d", i), Domain: host}
				s.hosts.Add(host, &hostEntry{d: newHostDomain(d)}, hostEntryCost(host, d))
			}
			c := s.Cost()
			return c.UnknownKeyBytes + c.HostBytes
		})
		runtime.KeepAlive(s)
	})
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheKeepsNoSliceOfThePresentedKey checks that the caches file entries under copies:
// the id of a presented key is a slice of the whole key, and an entry filed under that slice
// would keep the secret in memory for as long as the entry lives.
func TestCacheKeepsNoSliceOfThePresentedKey(t *testing.T) {
	ctx := t.Context()
	src, key, _ := newSource(t)
	c := New(src, DefaultOptions())
	unknown := fmt.Sprintf("%032x.", 7) + strings.Repeat("B", 43)
	for _, k := range []string{key, key, unknown} { // the second use stores the digest copy
		presented := strings.Clone(k)
		_, _ = c.Authenticate(ctx, presented, time.Now())
		lo := uintptr(unsafe.Pointer(unsafe.StringData(presented)))
		for _, id := range append(c.keys.lru.Keys(), c.neg.lru.Keys()...) {
			p := uintptr(unsafe.Pointer(unsafe.StringData(id)))
			if p >= lo && p < lo+uintptr(len(presented)) {
				t.Errorf("a cache entry is filed under a slice of the presented key %s...", k[:8])
			}
		}
		runtime.KeepAlive(presented)
	}
	host := strings.Clone("nowhere.example.com:8080")[:len("nowhere.example.com")]
	_, _ = c.DomainByHost(ctx, host)
	for _, h := range c.hosts.lru.Keys() {
		if unsafe.StringData(h) == unsafe.StringData(host) {
			t.Error("the host cache keeps a slice of the caller's string")
		}
	}
}

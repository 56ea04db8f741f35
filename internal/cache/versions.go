package cache

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Per-record versions: how a write invalidates only what depended on the record it wrote.
//
// Every key, user and domain id maps (by a seeded hash of its kind and id) to one of
// versionSlots counters, and every committed change (keys.Service.OnChange, each record of a
// cascade included, before the write returns) adds one to the counter of the record it
// changed. A cached answer carries Deps: the counters of the records it was read from, with
// the values they had, and it is served only while each still has that value. Two records
// sharing a counter only invalidate each other's answers more often than needed, never less,
// and the bookkeeping is a fixed array (versionSlots × 8 bytes) whatever the number of ids
// ever changed.
//
// One more counter, domainsSlot, moves on every change of any domain: a lookup of a host that
// has no domain depends on it, because a change reports the domain's id and not its host, so
// a domain created with that host (or moved to it) cannot be told apart from any other domain
// change.
//
// Reading versions, and why a change racing a read cannot leave a stale entry: an answer's
// versions must be read before the store is read, so that a change committed after the read
// moves a counter away from the value recorded. The key id and the host are known before the
// read, and their counters are read then. The user and the domain of a key, and the domain of
// a host, are known only from the read, so their counters are read after it; the answer is
// then kept only if the store generation (which every change moves, before it moves the
// record's counter) did not move between before the read and after those counters were read.
// If a change committed after the read, its hook moved the generation before the record's
// counter: either the counter was read before it moved (the entry carries the old value and
// is a miss once it moves) or the generation had moved by the time it is checked again (the
// entry is not kept).

// versionSlots is the number of per-record counters (a power of two): 512 KiB.
const versionSlots = 1 << 16

// domainsSlot is the counter every domain change moves (see above).
const domainsSlot = versionSlots

// versions are a Store's counters.
type versions struct {
	// gen moves on every change, before the record's counter: it guards fills (see above).
	gen   atomic.Uint64
	slots [versionSlots + 1]atomic.Uint64
	// seeds per kind, so that a key, a user and a domain with the same id map independently.
	keySeed, userSeed, domainSeed maphash.Seed
}

func newVersions() *versions {
	return &versions{keySeed: maphash.MakeSeed(), userSeed: maphash.MakeSeed(), domainSeed: maphash.MakeSeed()}
}

// slot returns the counter of the record kind/id; an unknown kind gets domainsSlot (never
// reached: the store reports only the three kinds).
func (v *versions) slot(kind, id string) uint32 {
	var seed maphash.Seed
	switch kind {
	case keys.KindKey:
		seed = v.keySeed
	case keys.KindUser:
		seed = v.userSeed
	case keys.KindDomain:
		seed = v.domainSeed
	default:
		return domainsSlot
	}
	return uint32(maphash.String(seed, id) & (versionSlots - 1))
}

// changed records a committed change of c's record: the generation first, then the record's
// counter (the order the fill guard relies on), and for a domain the counter of every domain.
func (v *versions) changed(c keys.Change) {
	v.gen.Add(1)
	if c.Kind != keys.KindKey && c.Kind != keys.KindUser && c.Kind != keys.KindDomain {
		// A kind this cache does not know (never reported today): it cannot tell what depends
		// on it, so every counter moves.
		for i := range v.slots {
			v.slots[i].Add(1)
		}
		return
	}
	v.slots[v.slot(c.Kind, c.ID)].Add(1)
	if c.Kind == keys.KindDomain {
		v.slots[domainsSlot].Add(1)
	}
}

// purge moves the generation and every counter: nothing read before is current any more.
func (v *versions) purge() {
	v.gen.Add(1)
	for i := range v.slots {
		v.slots[i].Add(1)
	}
}

// dep is the reading of one counter: which, and its value then.
func (v *versions) dep(slot uint32) dep { return dep{slot: slot, ver: v.slots[slot].Load()} }

// current reports whether every counter of d still has the value it was read at.
func (v *versions) current(d *Deps) bool {
	if d.stale {
		return false
	}
	for i := range d.n {
		if v.slots[d.slot[i]].Load() != d.ver[i] {
			return false
		}
	}
	return true
}

type dep struct {
	slot uint32
	ver  uint64
}

// maxDeps is the most counters an answer depends on: a decision depends on its key, the key's
// user and the key's domain, and on the lookup of the request's host.
const maxDeps = 4

// Deps are the records a cached answer depends on, as counters and the values they had when
// the answer was read. The zero Deps depends on nothing. A Deps is filled by Store's
// AuthenticateDeps and DomainByHostDeps and given to Decisions.Add with the decision made from
// their answers.
type Deps struct {
	slot [maxDeps]uint32
	ver  [maxDeps]uint64
	n    uint8
	// stale is set when an answer was read while a change committed: good for the request
	// that read it, not to be cached.
	stale bool
}

func (d *Deps) add(x dep) {
	if int(d.n) == maxDeps {
		d.stale = true // cannot record it: never cache rather than miss a dependency
		return
	}
	d.slot[d.n], d.ver[d.n] = x.slot, x.ver
	d.n++
}

func (d *Deps) addAll(o *Deps) {
	if o.stale {
		d.stale = true
	}
	for i := range o.n {
		d.add(dep{slot: o.slot[i], ver: o.ver[i]})
	}
}

// Cacheable reports whether an answer made from what d records may be cached: false when a
// read raced a committed change.
func (d *Deps) Cacheable() bool { return !d.stale }

// SharesVersion reports whether changes of the records a and b move the same counter (their
// hashes collide, about 1 in 65,536 for two ids), so that a change of one also invalidates
// what depended on the other. For tests that check what a change leaves cached.
func (s *Store) SharesVersion(a, b keys.Change) bool {
	return s.vers.slot(a.Kind, a.ID) == s.vers.slot(b.Kind, b.ID)
}

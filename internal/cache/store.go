// Package cache holds keyauthz's caches in front of the key store and the policy engine:
// verified keys, unknown key ids, domains by host (Store) and decisions (Decisions). All are
// LRUs bounded in bytes, and none can serve a stale answer: every committed change
// (keys.Service.OnChange, each record of a cascade included) moves the version of the record it
// changed, every entry carries the versions of the records it was read from (Deps), and an
// entry whose versions have moved is a miss. A write therefore invalidates only what depended
// on the record it wrote (versions.go). In front of a store whose view can fall behind (etcd
// in cluster mode: a Confirmer), cached answers are served only while that view is confirmed,
// or within the stale grace of its last confirmation, and all are dropped when it is
// confirmed again (docs/cluster.md#caches-and-the-watch).
package cache

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Source is what Store needs of the key store: a part of keys.Service, which every backend
// (badgerstore.Store) implements.
type Source interface {
	// KeyForAuth returns the key with its hash, its user and its domain, or ENOTFOUND.
	KeyForAuth(ctx context.Context, id string) (*keys.APIKey, *keys.User, *keys.Domain, error)
	// DomainByHost returns the domain whose host is host, or ENOTFOUND.
	DomainByHost(ctx context.Context, host string) (*keys.Domain, error)
	// OnChange registers fn to be called after every committed write or delete.
	OnChange(fn func(keys.Change))
}

// Confirmer is a Source whose view of the store of record can fall behind it (etcdstore: the
// watch may break, etcd may not answer). A Source that is not one (badgerstore: the store is
// local) is always confirmed.
type Confirmer interface {
	// UnconfirmedSince returns the zero time while every committed change is known to reach
	// OnChange, else the last moment that was known.
	UnconfirmedSince() time.Time
	// OnResync registers fn, called when the view is confirmed again after it was not, before
	// UnconfirmedSince reports it: changes may have been missed, so everything cached is
	// dropped.
	OnResync(fn func())
	// Unreachable returns, while the Source knows that the store of record does not answer,
	// the error a read would end with (an EUNAVAILABLE one), else nil: a lookup that may not
	// use the caches then fails at once instead of waiting for the read to time out.
	Unreachable() error
}

// Options bounds the caches of a Store in bytes (estimated: the records' strings plus each
// entry's bookkeeping). Zero or less disables that cache.
type Options struct {
	// KeyBytes bounds the verified-key cache (id → key, user, domain, hash).
	KeyBytes int64
	// UnknownKeyBytes bounds the cache of ids the store does not hold.
	UnknownKeyBytes int64
	// HostBytes bounds the domain-by-host cache (unknown hosts included).
	HostBytes int64
	// StaleGrace is, for a Source that is a Confirmer, how long after the last confirmation
	// cached answers are still served while the view is unconfirmed; 0 (the default) serves
	// none: every answer is read from the Source (and fails if it cannot be reached).
	StaleGrace time.Duration
}

// DefaultOptions are the bounds keyauthz serve uses unless told otherwise: room for about
// 4,500 verified keys (each keeps its policy input parts, input.go), 50,000 unknown ids and
// 2,000 hosts.
func DefaultOptions() Options {
	return Options{KeyBytes: 32 << 20, UnknownKeyBytes: 8 << 20, HostBytes: 1 << 20}
}

// maxHostLen is the longest host the host cache keeps (a DNS name has at most 253 characters):
// a client-chosen Host header must not be able to fill memory.
const maxHostLen = 253

// Store is a caching front of a Source for the credential path (authz.New puts one in front of
// the key store):
// Authenticate and DomainByHost answer from memory when they can and read the Source when not.
// It is safe for concurrent use.
//
// Secrets: an entry holds the stored HMAC of the key and, once a presented secret has verified
// against it, the SHA-256 of that secret. Every request is checked against the presented
// secret: by comparing the SHA-256 of the presented secret to the cached one in constant time
// (about 0.2 µs instead of about 1-2 µs for HMAC-SHA512), or, before any secret has verified,
// by the HMAC itself. The plaintext is never kept.
type Store struct {
	src   Source
	vers  *versions
	keys  *sizedLRU[string, *keyEntry]
	neg   *sizedLRU[string, dep]
	hosts *sizedLRU[string, *hostEntry]

	// conf is src as a Confirmer (nil: always confirmed), grace the StaleGrace.
	conf  Confirmer
	grace time.Duration
	// purges are called by Purge: the decision caches in front of this Store.
	purgeMu sync.Mutex
	purges  []func()

	hits, misses, bypassed atomic.Uint64
}

type keyEntry struct {
	// deps are the versions of the key, its user and its domain the entry was read at.
	deps      Deps
	hash      string
	digest    [sha256.Size]byte
	hasDigest bool
	// cred is shared by every request the entry answers: its records and the policy input's
	// parts built from them at fill time (input.go) are read-only.
	cred *Cred
	// cost is the entry's estimated size in bytes (keyEntryCost).
	cost int64
}

type hostEntry struct {
	// dep is the version of the host's domain, or of every domain for a host without one.
	dep dep
	d   *HostDomain // nil when the host has no domain; its input part built at fill time
	err error       // the ENOTFOUND error when the host has no domain
}

// New returns a Store in front of src and registers it with src.OnChange, and, when src is a
// Confirmer, with its OnResync (Purge).
func New(src Source, o Options) *Store {
	s := &Store{src: src, vers: newVersions(), grace: max(o.StaleGrace, 0)}
	if o.KeyBytes > 0 {
		s.keys = newSizedLRU[string, *keyEntry](o.KeyBytes)
	}
	if o.UnknownKeyBytes > 0 {
		s.neg = newSizedLRU[string, dep](o.UnknownKeyBytes)
	}
	if o.HostBytes > 0 {
		s.hosts = newSizedLRU[string, *hostEntry](o.HostBytes)
	}
	src.OnChange(s.vers.changed)
	if c, ok := src.(Confirmer); ok {
		s.conf = c
		c.OnResync(s.Purge)
	}
	return s
}

// Serving reports whether cached answers may be served now: the Source is confirmed, or
// unconfirmed for no longer than the stale grace (against the wall clock, in which the
// Source reports it). A nil Store serves nothing from a cache it does not have: true.
func (s *Store) Serving() bool {
	if s == nil || s.conf == nil {
		return true
	}
	since := s.conf.UnconfirmedSince()
	if since.IsZero() {
		return true
	}
	if s.grace > 0 && time.Since(since) <= s.grace {
		return true
	}
	s.bypassed.Add(1)
	return false
}

// unreachable is the Confirmer's Unreachable (nil without one, and while confirmed).
func (s *Store) unreachable() error {
	if s.conf == nil || s.conf.UnconfirmedSince().IsZero() {
		return nil
	}
	return s.conf.Unreachable()
}

// Bypassed returns the number of lookups that skipped the caches because the Source was
// unconfirmed for longer than the stale grace.
func (s *Store) Bypassed() uint64 { return s.bypassed.Load() }

// Purge drops every cached answer: each version moves (so an answer being filled now is not
// kept either, versions.go) and the caches are emptied, the decision caches in front of s
// included. The Source calls it (OnResync) when changes may have been missed.
func (s *Store) Purge() {
	s.vers.purge()
	for _, l := range []interface{ Purge() }{s.keys, s.neg, s.hosts} {
		if l != nil {
			l.Purge()
		}
	}
	s.purgeMu.Lock()
	fns := slices.Clone(s.purges)
	s.purgeMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// onPurge registers fn to be called by Purge.
func (s *Store) onPurge(fn func()) {
	s.purgeMu.Lock()
	s.purges = append(s.purges, fn)
	s.purgeMu.Unlock()
}

// Generation returns the store generation: it moves after every committed change, before the
// change's write call returns. Entries are not keyed on it (they carry Deps); it tells whether
// any change committed while an answer was being made.
func (s *Store) Generation() uint64 { return s.vers.gen.Load() }

// Current reports whether every record d depends on is unchanged since d was read (and d is
// cacheable). A nil Store knows of no change: only the empty Deps is current.
func (s *Store) Current(d *Deps) bool {
	if s == nil {
		return d.n == 0 && !d.stale
	}
	return s.vers.current(d)
}

// Stats returns the number of key and host lookups answered from memory and from the store.
func (s *Store) Stats() (hits, misses uint64) { return s.hits.Load(), s.misses.Load() }

// Authenticate verifies a presented key as keys.Service.Authenticate does (same errors, same
// order of checks: shape, id, secret, expiry) and returns a result whose records are shared
// and must not be modified.
func (s *Store) Authenticate(ctx context.Context, plaintext string, now time.Time) (*keys.AuthResult, error) {
	var deps Deps
	return s.AuthenticateDeps(ctx, plaintext, now, &deps)
}

// AuthenticateDeps is Authenticate, and adds to deps the versions of the key, its user and its
// domain the result was read at (on success; on an error deps may be partly filled, and no
// decision is cached then). It marks deps not cacheable when a change committed during the read.
func (s *Store) AuthenticateDeps(ctx context.Context, plaintext string, now time.Time, deps *Deps) (*keys.AuthResult, error) {
	c, err := s.AuthenticateCred(ctx, plaintext, now, deps)
	if err != nil {
		return nil, err
	}
	return c.AuthResult, nil
}

// AuthenticateCred is AuthenticateDeps, returning the verified key with the policy input's key
// and user parts (Cred.SetInput), built once when the cache entry was filled.
func (s *Store) AuthenticateCred(ctx context.Context, plaintext string, now time.Time, deps *Deps) (*Cred, error) {
	id, secret, ok := keys.ParseKey(plaintext)
	if !ok {
		return nil, keys.ErrUnknownKey
	}
	var digest [sha256.Size]byte
	serving := s.Serving()
	if s.keys != nil && serving {
		if e, ok := s.keys.Get(id); ok && s.vers.current(&e.deps) {
			s.hits.Add(1)
			digest = secretDigest(secret)
			if e.hasDigest {
				if subtle.ConstantTimeCompare(digest[:], e.digest[:]) != 1 {
					return nil, keys.ErrUnknownKey
				}
			} else {
				if !keys.VerifyHash(id, secret, e.hash) {
					return nil, keys.ErrUnknownKey
				}
				s.keys.Add(strings.Clone(id), e.withDigest(digest), e.cost)
			}
			deps.addAll(&e.deps)
			return e.check(now)
		}
	}
	if s.neg != nil && serving {
		if nd, ok := s.neg.Get(id); ok && s.vers.slots[nd.slot].Load() == nd.ver {
			s.hits.Add(1)
			return nil, keys.ErrUnknownKey
		}
	}
	s.misses.Add(1)
	// A read would only wait for its timeout: fail at once (a 503 deny).
	if err := s.unreachable(); err != nil {
		return nil, err
	}
	// Both read before the store is read (versions.go).
	g := s.vers.gen.Load()
	keyDep := s.vers.dep(s.vers.slot(keys.KindKey, id))
	k, u, d, err := s.src.KeyForAuth(ctx, id)
	if keys.ErrorCode(err) == keys.ENOTFOUND {
		// An unknown id depends on that id only: a key is created with its user and domain in
		// place, and deleting a user or a domain deletes its keys in the same write.
		if s.neg != nil && s.vers.gen.Load() == g {
			// A copy: id is a slice of the presented key, and keeping it would keep the secret.
			s.neg.Add(strings.Clone(id), keyDep, negEntryCost)
		}
		return nil, keys.ErrUnknownKey
	}
	if err != nil {
		return nil, err
	}
	e := &keyEntry{hash: k.Hash}
	e.deps.add(keyDep)
	// Known only now: read after the store, and valid only if the generation has not moved
	// since before the read (checked below, after these reads).
	e.deps.add(s.vers.dep(s.vers.slot(keys.KindUser, u.ID)))
	e.deps.add(s.vers.dep(s.vers.slot(keys.KindDomain, d.ID)))
	if s.vers.gen.Load() != g {
		e.deps.stale = true
	}
	k.Hash = ""
	e.cred = newCred(&keys.AuthResult{Key: k, User: u, Domain: d})
	e.cost = keyEntryCost(e)
	verified := keys.VerifyHash(id, secret, e.hash)
	if verified {
		e.digest, e.hasDigest = secretDigest(secret), true
	}
	// A fill that raced a change is answered but not kept: its user's or domain's versions
	// may have been read after the change moved them.
	if s.keys != nil && !e.deps.stale {
		// A copy: id is a slice of the presented key, and keeping it would keep the secret.
		s.keys.Add(strings.Clone(id), e, e.cost)
	}
	if !verified {
		return nil, keys.ErrUnknownKey
	}
	deps.addAll(&e.deps)
	return e.check(now)
}

func (e *keyEntry) withDigest(d [sha256.Size]byte) *keyEntry {
	c := *e
	c.digest, c.hasDigest = d, true
	return &c
}

// check is the expiry check of a verified key: expires_at <= now is expired.
func (e *keyEntry) check(now time.Time) (*Cred, error) {
	if e.cred.Key.Expired(now) {
		return nil, keys.ErrExpiredKey
	}
	return e.cred, nil
}

// secretDigest is SHA-256 of a presented secret (43 bytes: one SHA-256 block), without
// allocating.
func secretDigest(secret string) [sha256.Size]byte {
	var buf [64]byte
	n := copy(buf[:], secret)
	if n < len(secret) {
		// Never reached for a parsed key; hash the whole secret all the same.
		return sha256.Sum256([]byte(secret))
	}
	return sha256.Sum256(buf[:n])
}

// DomainByHost returns the domain whose host is host, or ENOTFOUND, as the Source does; host
// is expected normalised (lower case, no port), as authz.Hostname gives it. The result is
// shared and must not be modified.
func (s *Store) DomainByHost(ctx context.Context, host string) (*keys.Domain, error) {
	var deps Deps
	return s.DomainByHostDeps(ctx, host, &deps)
}

// DomainByHostDeps is DomainByHost, and adds to deps the version the answer was read at: the
// found domain's, or, for a host without a domain, the version every domain change moves.
// It marks deps not cacheable when a change committed during the read.
func (s *Store) DomainByHostDeps(ctx context.Context, host string, deps *Deps) (*keys.Domain, error) {
	h, err := s.HostDomainDeps(ctx, host, deps)
	if h == nil {
		return nil, err
	}
	return h.Domain, err
}

// HostDomainDeps is DomainByHostDeps, returning the domain with the policy input's domain part
// (HostDomain.SetInput), built once when the cache entry was filled; nil with the error when
// the host has none.
func (s *Store) HostDomainDeps(ctx context.Context, host string, deps *Deps) (*HostDomain, error) {
	serving := s.Serving()
	if s.hosts != nil && serving {
		if e, ok := s.hosts.Get(host); ok && s.vers.slots[e.dep.slot].Load() == e.dep.ver {
			s.hits.Add(1)
			deps.add(e.dep)
			return e.d, e.err
		}
	}
	s.misses.Add(1)
	// A read would only wait for its timeout: fail at once (a 503 deny).
	if err := s.unreachable(); err != nil {
		return nil, err
	}
	// Both read before the store is read (versions.go).
	g := s.vers.gen.Load()
	noDomain := s.vers.dep(domainsSlot)
	d, err := s.src.DomainByHost(ctx, host)
	if err != nil && keys.ErrorCode(err) != keys.ENOTFOUND {
		return nil, err
	}
	// A host with a domain depends on that domain only: another domain can take the host only
	// once this one has left it or is deleted, which moves this one's version.
	dp := noDomain
	if err == nil {
		// Known only now: read after the store, valid only if the generation has not moved.
		dp = s.vers.dep(s.vers.slot(keys.KindDomain, d.ID))
	}
	h := newHostDomain(d)
	if s.vers.gen.Load() != g {
		deps.stale = true
		return h, err
	}
	deps.add(dp)
	if s.hosts != nil && len(host) <= maxHostLen {
		host = strings.Clone(host) // it may be a slice of a larger request buffer
		s.hosts.Add(host, &hostEntry{dep: dp, d: h, err: err}, hostEntryCost(host, d))
	}
	return h, err
}

// StoreCost is the memory a Store's caches hold: estimated bytes and entries of each.
type StoreCost struct {
	KeyBytes, UnknownKeyBytes, HostBytes int64
	Keys, UnknownKeys, Hosts             int
}

// Cost returns the estimated bytes and entries each cache holds.
func (s *Store) Cost() StoreCost {
	var c StoreCost
	if s.keys != nil {
		c.KeyBytes, c.Keys = s.keys.Cost()
	}
	if s.neg != nil {
		c.UnknownKeyBytes, c.UnknownKeys = s.neg.Cost()
	}
	if s.hosts != nil {
		c.HostBytes, c.Hosts = s.hosts.Cost()
	}
	return c
}

// Estimated bytes of the policy input's parts an entry keeps (input.go): termCost per string
// of a list (scopes, groups) in a term, credTermsCost for a Cred's structs and terms besides
// those lists (the user part, the key part for each source and the header's term),
// hostTermsCost for a HostDomain's. Checked against the heap by TestEntryCostCoversMemory.
const (
	termCost      = 64
	credTermsCost = 2048
	hostTermsCost = 640
)

var (
	keyEntryOverhead = entryOverhead(unsafe.Sizeof(""), unsafe.Sizeof(sizedValue[*keyEntry]{})) +
		roundAlloc(int64(unsafe.Sizeof(keyEntry{}))) + roundAlloc(int64(unsafe.Sizeof(keys.AuthResult{}))) +
		roundAlloc(int64(unsafe.Sizeof(keys.APIKey{}))) + roundAlloc(int64(unsafe.Sizeof(keys.User{}))) +
		roundAlloc(int64(unsafe.Sizeof(keys.Domain{}))) + 2*16 // the two *int64 of a key
	// negEntryCost: the entry, its map slot and the copied id (32 bytes).
	negEntryCost  = entryOverhead(unsafe.Sizeof(""), unsafe.Sizeof(sizedValue[dep]{})) + 32
	hostEntrySize = entryOverhead(unsafe.Sizeof(""), unsafe.Sizeof(sizedValue[*hostEntry]{})) +
		roundAlloc(int64(unsafe.Sizeof(hostEntry{}))) + roundAlloc(int64(unsafe.Sizeof(keys.Domain{})))
)

// keyEntryCost estimates the bytes of a verified-key entry: its structs, the cache's
// bookkeeping, the key id it is filed under and every string of the key, user and domain
// records (a withDigest copy of the entry replaces it, so it is not counted twice).
func keyEntryCost(e *keyEntry) int64 {
	n := keyEntryOverhead + credTermsCost + roundAlloc(int64(len(e.cred.Key.ID))) + roundAlloc(int64(len(e.hash)))
	k, u, d := e.cred.Key, e.cred.User, e.cred.Domain
	for _, s := range [...]string{k.ID, k.Name, k.Description, string(k.Permissions), k.UserID, k.AuthorityID} {
		n += roundAlloc(int64(len(s)))
	}
	n += stringsCost(k.Scopes) + int64(len(k.Scopes))*termCost
	if u != nil {
		n += int64(len(u.Groups)) * termCost
	}
	if u != nil {
		for _, s := range [...]string{u.ID, u.AuthorityID, u.Name, u.Email} {
			n += roundAlloc(int64(len(s)))
		}
		n += stringsCost(u.Groups)
	}
	n += domainStrings(d)
	return n
}

func hostEntryCost(host string, d *keys.Domain) int64 {
	n := hostEntrySize + roundAlloc(int64(len(host))) + domainStrings(d)
	if d != nil {
		n += hostTermsCost
	}
	return n
}

func domainStrings(d *keys.Domain) int64 {
	if d == nil {
		return 0
	}
	var n int64
	for _, s := range [...]string{d.ID, d.Name, d.Domain, d.Description} {
		n += roundAlloc(int64(len(s)))
	}
	return n
}

// stringsCost is a slice of strings: its backing array and each string.
func stringsCost(ss []string) int64 {
	n := roundAlloc(int64(cap(ss)) * int64(unsafe.Sizeof("")))
	for _, s := range ss {
		n += roundAlloc(int64(len(s)))
	}
	return n
}

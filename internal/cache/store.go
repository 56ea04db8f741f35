// Package cache holds keyauthz's caches in front of the key store and the policy engine:
// verified keys, unknown key ids, domains by host (Store) and decisions (Decisions). All are
// bounded LRUs, and none can serve a stale answer: the store generation moves on every
// committed change (keys.Store.OnChange, each record of a cascade included), every entry
// carries the generation it was read at, and an entry of an older generation is a miss.
package cache

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Source is what Store needs of the key store (*keys.Store implements it).
type Source interface {
	// KeyForAuth returns the key with its hash, its user and its domain, or ENOTFOUND.
	KeyForAuth(ctx context.Context, id string) (*keys.APIKey, *keys.User, *keys.Domain, error)
	// DomainByHost returns the domain whose host is host, or ENOTFOUND.
	DomainByHost(ctx context.Context, host string) (*keys.Domain, error)
	// OnChange registers fn to be called after every committed write or delete.
	OnChange(fn func(keys.Change))
}

// Options sizes the caches of a Store, in entries. Zero or less disables that cache.
type Options struct {
	// Keys bounds the verified-key cache (id → key, user, domain, hash).
	Keys int
	// UnknownKeys bounds the cache of ids the store does not hold.
	UnknownKeys int
	// Hosts bounds the domain-by-host cache (unknown hosts included).
	Hosts int
}

// DefaultOptions are the sizes keyauthz serve uses unless told otherwise.
func DefaultOptions() Options {
	return Options{Keys: 10_000, UnknownKeys: 10_000, Hosts: 1_000}
}

// maxHostLen is the longest host the host cache keeps (a DNS name has at most 253 characters):
// a client-chosen Host header must not be able to fill memory.
const maxHostLen = 253

// Store is a caching front of a Source for the credential path (it implements authz.Store):
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
	gen   atomic.Uint64
	keys  *lru.Cache[string, *keyEntry]
	neg   *lru.Cache[string, uint64]
	hosts *lru.Cache[string, *hostEntry]

	hits, misses atomic.Uint64
}

type keyEntry struct {
	gen       uint64
	hash      string
	digest    [sha256.Size]byte
	hasDigest bool
	// res is shared by every request the entry answers; its records are read-only.
	res *keys.AuthResult
}

type hostEntry struct {
	gen uint64
	d   *keys.Domain
	err error // the ENOTFOUND error when the host has no domain
}

// New returns a Store in front of src and registers it with src.OnChange.
func New(src Source, o Options) *Store {
	s := &Store{src: src}
	if o.Keys > 0 {
		s.keys, _ = lru.New[string, *keyEntry](o.Keys)
	}
	if o.UnknownKeys > 0 {
		s.neg, _ = lru.New[string, uint64](o.UnknownKeys)
	}
	if o.Hosts > 0 {
		s.hosts, _ = lru.New[string, *hostEntry](o.Hosts)
	}
	src.OnChange(func(keys.Change) { s.gen.Add(1) })
	return s
}

// Generation returns the store generation: it moves after every committed change, before the
// change's write call returns. An answer read at generation g is valid while Generation() == g.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// Stats returns the number of key and host lookups answered from memory and from the store.
func (s *Store) Stats() (hits, misses uint64) { return s.hits.Load(), s.misses.Load() }

// Authenticate verifies a presented key as keys.Store.Authenticate does (same errors, same
// order of checks: shape, id, secret, expiry) and returns a result whose records are shared
// and must not be modified.
func (s *Store) Authenticate(ctx context.Context, plaintext string, now time.Time) (*keys.AuthResult, error) {
	id, secret, ok := keys.ParseKey(plaintext)
	if !ok {
		return nil, keys.ErrUnknownKey
	}
	g := s.gen.Load()
	var digest [sha256.Size]byte
	if s.keys != nil {
		if e, ok := s.keys.Get(id); ok && e.gen == g {
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
				s.keys.Add(id, e.withDigest(digest))
			}
			return e.check(now)
		}
	}
	if s.neg != nil {
		if eg, ok := s.neg.Get(id); ok && eg == g {
			s.hits.Add(1)
			return nil, keys.ErrUnknownKey
		}
	}
	s.misses.Add(1)
	k, u, d, err := s.src.KeyForAuth(ctx, id)
	if keys.ErrorCode(err) == keys.ENOTFOUND {
		if s.neg != nil && s.gen.Load() == g {
			s.neg.Add(id, g)
		}
		return nil, keys.ErrUnknownKey
	}
	if err != nil {
		return nil, err
	}
	e := &keyEntry{gen: g, hash: k.Hash}
	k.Hash = ""
	e.res = &keys.AuthResult{Key: k, User: u, Domain: d}
	verified := keys.VerifyHash(id, secret, e.hash)
	if verified {
		e.digest, e.hasDigest = secretDigest(secret), true
	}
	// An entry stamped g is never served once the generation has moved, so a fill that raced
	// a change is harmless; not storing it saves an entry that could only be a miss.
	if s.keys != nil && s.gen.Load() == g {
		s.keys.Add(id, e)
	}
	if !verified {
		return nil, keys.ErrUnknownKey
	}
	return e.check(now)
}

func (e *keyEntry) withDigest(d [sha256.Size]byte) *keyEntry {
	c := *e
	c.digest, c.hasDigest = d, true
	return &c
}

// check is the expiry check of a verified key: expires_at <= now is expired.
func (e *keyEntry) check(now time.Time) (*keys.AuthResult, error) {
	if e.res.Key.Expired(now) {
		return nil, keys.ErrExpiredKey
	}
	return e.res, nil
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
	g := s.gen.Load()
	if s.hosts != nil {
		if e, ok := s.hosts.Get(host); ok && e.gen == g {
			s.hits.Add(1)
			return e.d, e.err
		}
	}
	s.misses.Add(1)
	d, err := s.src.DomainByHost(ctx, host)
	if err != nil && keys.ErrorCode(err) != keys.ENOTFOUND {
		return nil, err
	}
	if s.hosts != nil && len(host) <= maxHostLen && s.gen.Load() == g {
		s.hosts.Add(host, &hostEntry{gen: g, d: d, err: err})
	}
	return d, err
}

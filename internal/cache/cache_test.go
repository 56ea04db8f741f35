package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// countingSource is a real in-memory key store that counts the reads reaching it.
type countingSource struct {
	*badgerstore.Store
	keyReads, hostReads int
	// afterRead, when set, runs once after the next read, before its answer is returned: a
	// change committed (its hooks run) between the store read and the cache's bookkeeping.
	afterRead func()
}

func (c *countingSource) KeyForAuth(ctx context.Context, id string) (*keys.APIKey, *keys.User, *keys.Domain, error) {
	c.keyReads++
	k, u, d, err := c.Store.KeyForAuth(ctx, id)
	c.raced()
	return k, u, d, err
}

func (c *countingSource) DomainByHost(ctx context.Context, host string) (*keys.Domain, error) {
	c.hostReads++
	d, err := c.Store.DomainByHost(ctx, host)
	c.raced()
	return d, err
}

func (c *countingSource) raced() {
	if f := c.afterRead; f != nil {
		c.afterRead = nil
		f()
	}
}

func newSource(t *testing.T) (*countingSource, string, string) {
	t.Helper()
	ctx := t.Context()
	st, err := badgerstore.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	u := &keys.User{Name: "U", Email: "u@acme.example.com"}
	if err := st.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u.AuthorityID = d.ID
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	k := &keys.APIKey{Name: "k", UserID: u.ID, Scopes: []string{"public"}}
	secret, err := st.CreateKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	return &countingSource{Store: st}, string(secret), k.ID
}

func TestStoreAnswersFromMemoryUntilAChange(t *testing.T) {
	ctx := t.Context()
	src, key, id := newSource(t)
	c := New(src, DefaultOptions())
	now := time.Now()

	for range 3 {
		if _, err := c.Authenticate(ctx, key, now); err != nil {
			t.Fatal(err)
		}
	}
	if src.keyReads != 1 {
		t.Errorf("3 authentications read the store %d times, want 1", src.keyReads)
	}
	// A wrong secret for a cached id is refused without a store read.
	b := []byte(key)
	b[40] = map[bool]byte{true: 'B', false: 'A'}[b[40] == 'A'] // a well-formed, wrong secret
	reads := src.keyReads
	if _, err := c.Authenticate(ctx, string(b), now); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("wrong secret: %v, want ErrUnknownKey", err)
	}
	if src.keyReads != reads {
		t.Errorf("a wrong secret for a cached id read the store")
	}
	// An unknown id reaches the store once, then the negative cache answers.
	unknown := "0123456789abcdef0123456789abcdef." + strings.Repeat("A", 43)
	for range 3 {
		if _, err := c.Authenticate(ctx, unknown, now); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if src.keyReads != 2 {
		t.Errorf("store reads after 3 unknown-key lookups: %d, want 2", src.keyReads)
	}

	// A committed change makes the next lookup read the store again.
	if err := src.DeleteKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Authenticate(ctx, key, now); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("deleted key: %v, want ErrUnknownKey", err)
	}

	for range 3 {
		if _, err := c.DomainByHost(ctx, "nowhere.example.com"); keys.ErrorCode(err) != keys.ENOTFOUND {
			t.Fatalf("unknown host: %v", err)
		}
	}
	if src.hostReads != 1 {
		t.Errorf("3 unknown-host lookups read the store %d times, want 1", src.hostReads)
	}
}

func TestDecisions(t *testing.T) {
	if c := NewDecisions(0, nil); c != nil {
		t.Fatalf("NewDecisions(0) = %v, want nil (no caching)", c)
	}
	var none *Decisions
	none.Add(&DecisionKey{}, &Deps{}, opa.Decision{Allow: true}, nil)
	if _, ok := none.Get(&DecisionKey{}, time.Now()); ok {
		t.Fatal("a nil cache answered")
	}

	now := time.Unix(1_000, 0)
	allow := opa.Decision{Allow: true, Status: 200}
	exp := int64(1_010)
	k1 := DecisionKey{Method: "GET", Path: "/a", KeyID: "k1"}
	k2 := DecisionKey{Method: "GET", Path: "/a", KeyID: "k2"}
	// Room for two entries of this size and not three.
	c := NewDecisions(2*decisionCost(&k1, &decisionEntry{d: allow})+8, nil)
	c.Add(&k1, &Deps{}, allow, &exp)
	c.Add(&k2, &Deps{}, allow, nil)
	if _, ok := c.Get(&k1, now); !ok {
		t.Error("fresh entry missed")
	}
	if _, ok := c.Get(&k1, time.Unix(exp, 0)); ok {
		t.Error("an entry was served at its key's expires_at")
	}
	c.Add(&DecisionKey{Method: "GET", Path: "/b"}, &Deps{}, allow, nil)
	c.Add(&DecisionKey{Method: "GET", Path: "/c"}, &Deps{}, allow, nil)
	if _, ok := c.Get(&k2, now); ok {
		t.Error("the cache holds more entries than its bound in bytes allows")
	}
	if h, m := c.Stats(); h != 1 || m != 2 {
		t.Errorf("stats: %d hits, %d misses; want 1, 2", h, m)
	}
	// Deps that raced a change are not cached.
	k3 := DecisionKey{Method: "GET", Path: "/d"}
	c.Add(&k3, &Deps{stale: true}, allow, nil)
	if _, ok := c.Get(&k3, now); ok {
		t.Error("a decision whose reads raced a change was cached")
	}
}

// TestDecisionsFollowVersions checks that a cached decision is served while the records it
// depends on are unchanged, and not once one of them has changed, while a decision that did
// not depend on the changed record stays cached.
func TestDecisionsFollowVersions(t *testing.T) {
	ctx := t.Context()
	src, key, id := newSource(t)
	s := New(src, DefaultOptions())
	c := NewDecisions(1<<20, s)
	now := time.Now()
	allow := opa.Decision{Allow: true, Status: 200}

	var withKey Deps
	auth, err := s.AuthenticateDeps(ctx, key, now, &withKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DomainByHostDeps(ctx, "acme.example.com", &withKey); err != nil {
		t.Fatal(err)
	}
	var anon Deps // a request without a key, on a host without a domain
	if _, err := s.DomainByHostDeps(ctx, "nowhere.example.com", &anon); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Fatal(err)
	}
	kKey := DecisionKey{Method: "GET", Path: "/a", Host: "acme.example.com", KeyID: id}
	kAnon := DecisionKey{Method: "GET", Path: "/a", Host: "nowhere.example.com"}
	c.Add(&kKey, &withKey, allow, nil)
	c.Add(&kAnon, &anon, allow, nil)
	served := func(k *DecisionKey) bool { _, ok := c.Get(k, now); return ok }
	if !served(&kKey) || !served(&kAnon) {
		t.Fatal("fresh decisions missed")
	}

	// A change to an unrelated key and user: both stay cached.
	other := &keys.User{AuthorityID: auth.Domain.ID, Name: "Other", Email: "o@acme.example.com"}
	if err := src.CreateUser(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := src.CreateKey(ctx, &keys.APIKey{Name: "other", UserID: other.ID, Scopes: []string{"public"}}); err != nil {
		t.Fatal(err)
	}
	if !served(&kKey) || !served(&kAnon) {
		t.Error("a change to another key and user invalidated unrelated decisions")
	}
	// The key's user changes: the key's decision goes, the anonymous one stays.
	if _, err := src.ModifyUser(ctx, auth.User.ID, func(u *keys.User) error { u.Name = "Renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if served(&kKey) {
		t.Error("a decision was served after its key's user changed")
	}
	if !served(&kAnon) {
		t.Error("a user change invalidated a decision that did not depend on it")
	}
	// A new domain: a host without a domain may have one now.
	if err := src.CreateDomain(ctx, &keys.Domain{Name: "Elsewhere", Domain: "elsewhere.example.com"}); err != nil {
		t.Fatal(err)
	}
	if served(&kAnon) {
		t.Error("a decision on a host without a domain was served after a domain was created")
	}
}

// TestStoreInvalidatesPerRecord checks that the store cache drops exactly what depended on a
// changed record: a key's entry on a change of the key, its user or its domain; an unknown id
// when a key with that id is created; a host when its domain changes, and a host without a
// domain when any domain changes. Entries that did not depend on the record stay.
func TestStoreInvalidatesPerRecord(t *testing.T) {
	ctx := t.Context()
	src, key, id := newSource(t)
	c := New(src, DefaultOptions())
	now := time.Now()
	auth, err := c.Authenticate(ctx, key, now)
	if err != nil {
		t.Fatal(err)
	}
	user, domain := auth.User.ID, auth.Domain.ID
	other := &keys.User{AuthorityID: domain, Name: "Other", Email: "o@acme.example.com"}
	if err := src.CreateUser(ctx, other); err != nil {
		t.Fatal(err)
	}
	ok := &keys.APIKey{Name: "other", UserID: other.ID, Scopes: []string{"public"}}
	otherKey, err := src.CreateKey(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	auth2 := func(k string) {
		t.Helper()
		if _, err := c.Authenticate(ctx, k, now); err != nil {
			t.Fatal(err)
		}
	}
	host := func(h string) {
		t.Helper()
		if _, err := c.DomainByHost(ctx, h); err != nil && keys.ErrorCode(err) != keys.ENOTFOUND {
			t.Fatal(err)
		}
	}
	warm := func() {
		auth2(key)
		auth2(string(otherKey))
		host("acme.example.com")
		host("nowhere.example.com")
	}
	warm()
	reads := func(change func()) (keyReads, hostReads int) {
		t.Helper()
		warm()
		k0, h0 := src.keyReads, src.hostReads
		change()
		warm()
		return src.keyReads - k0, src.hostReads - h0
	}
	if k, h := reads(func() {}); k != 0 || h != 0 {
		t.Fatalf("no change: %d key reads, %d host reads; want 0, 0", k, h)
	}
	if k, h := reads(func() {
		if _, err := src.UpdateKey(ctx, ok.ID, keys.KeyUpdate{Description: ptr("d")}); err != nil {
			t.Fatal(err)
		}
	}); k != 1 || h != 0 {
		t.Errorf("one key changed: %d key reads, %d host reads; want 1, 0", k, h)
	}
	if k, h := reads(func() {
		if _, err := src.ModifyUser(ctx, user, func(u *keys.User) error { u.Name = "V"; return nil }); err != nil {
			t.Fatal(err)
		}
	}); k != 1 || h != 0 {
		t.Errorf("one user changed: %d key reads, %d host reads; want 1 (its key), 0", k, h)
	}
	if k, h := reads(func() {
		if _, err := src.ModifyDomain(ctx, domain, func(d *keys.Domain) error { d.Description = "x"; return nil }); err != nil {
			t.Fatal(err)
		}
	}); k != 2 || h != 2 {
		t.Errorf("the domain changed: %d key reads, %d host reads; want 2 (both keys), 2 (its host and the host without one)", k, h)
	}
	if k, h := reads(func() {
		if err := src.CreateDomain(ctx, &keys.Domain{Name: "New", Domain: "new.example.com"}); err != nil {
			t.Fatal(err)
		}
	}); k != 0 || h != 1 {
		t.Errorf("a domain created: %d key reads, %d host reads; want 0, 1 (the host without one)", k, h)
	}
	// An unknown id is answered from memory until a key with that id is created (by import,
	// the one way to choose an id).
	k, _, _, err := src.Store.KeyForAuth(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.DeleteKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Authenticate(ctx, key, now); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("deleted key: %v", err)
		}
	}
	k0 := src.keyReads
	if _, err := c.Authenticate(ctx, key, now); !errors.Is(err, keys.ErrUnknownKey) || src.keyReads != k0 {
		t.Fatalf("unknown id: %v, %d store reads; want ErrUnknownKey from memory", err, src.keyReads-k0)
	}
	hash := k.Hash
	k.Hash = ""
	if n, err := src.ImportKeys(ctx, func(yield func(keys.BulkKey) bool) { yield(keys.BulkKey{Key: *k, Hash: hash}) }); err != nil || n != 1 {
		t.Fatalf("import: %d, %v", n, err)
	}
	if _, err := c.Authenticate(ctx, key, now); err != nil {
		t.Errorf("a key created with an id cached as unknown: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestVersionsBounded checks the bookkeeping is a fixed size whatever the number of records
// changed, and that a change moves the counter of its record.
func TestVersionsBounded(t *testing.T) {
	v := newVersions()
	var d Deps
	d.add(v.dep(v.slot(keys.KindKey, "a")))
	for i := range 100_000 {
		v.changed(keys.Change{Kind: keys.KindUser, ID: fmt.Sprint(i)})
	}
	if size := unsafe.Sizeof(*v); size > 1<<20 {
		t.Errorf("versions take %d bytes", size)
	}
	if a, b := v.slot(keys.KindKey, "a"), v.slot(keys.KindKey, "a"); a != b {
		t.Fatalf("slot is not deterministic: %d, then %d", a, b)
	}
	v.changed(keys.Change{Kind: keys.KindKey, ID: "a"})
	if v.current(&d) {
		t.Error("a change of the record left its deps current")
	}
}

// TestChangeRacingAReadIsNotCached commits a change of a key's user, and of a host's domain,
// after the store read that will fill the cache and before the cache reads the versions it
// learns from that read (the user's, the domain's): the answer read before the change must not
// be kept under the versions of after it.
func TestChangeRacingAReadIsNotCached(t *testing.T) {
	ctx := t.Context()
	src, key, _ := newSource(t)
	c := New(src, DefaultOptions())
	now := time.Now()
	auth, err := src.Store.Authenticate(ctx, key, now)
	if err != nil {
		t.Fatal(err)
	}
	src.afterRead = func() {
		if _, err := src.ModifyUser(ctx, auth.User.ID, func(u *keys.User) error { u.SysAdmin = true; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var deps Deps
	res, err := c.AuthenticateDeps(ctx, key, now, &deps)
	if err != nil {
		t.Fatal(err)
	}
	if res.User.SysAdmin {
		t.Fatal("the test's read saw the change: it did not race")
	}
	if deps.Cacheable() {
		t.Error("deps of a read that raced a change are cacheable")
	}
	if res, err := c.Authenticate(ctx, key, now); err != nil || !res.User.SysAdmin {
		t.Errorf("after the change returned, the user read before it was served: %+v, %v", res.User, err)
	}

	src.afterRead = func() {
		if _, err := src.ModifyDomain(ctx, auth.Domain.ID, func(d *keys.Domain) error { d.Domain = "moved.example.com"; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	deps = Deps{}
	if d, err := c.DomainByHostDeps(ctx, "acme.example.com", &deps); err != nil || d == nil {
		t.Fatalf("the test's read saw the change: %v", err)
	}
	if deps.Cacheable() {
		t.Error("deps of a host read that raced a change are cacheable")
	}
	if _, err := c.DomainByHost(ctx, "acme.example.com"); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Errorf("after the host moved, the old host still found a domain: %v", err)
	}
}

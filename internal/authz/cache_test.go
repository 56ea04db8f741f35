package authz

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/policies"
)

// cacheFixture is a real Badger store on disk, the real built-in policy, a cached Authorizer
// (the caches keyauthz serve runs, with a small decision cache) and an uncached one (the
// oracle: every bound zero, so every answer is read from the store and the policy) on the same
// store and engine, with a clock the test moves.
type cacheFixture struct {
	store           *badgerstore.Store
	engine          *opa.Engine
	cached, oracle  *Authorizer
	clock           atomic.Int64 // Unix nanoseconds
	domain          *keys.Domain
	panel, admin    *keys.User
	booking, adminK string
	bookingID       string
}

func newCacheFixture(t *testing.T) *cacheFixture {
	t.Helper()
	ctx := t.Context()
	store, err := badgerstore.Open(t.TempDir())
	must(t, err)
	t.Cleanup(func() { _ = store.Close() })
	b, err := opa.Builtin()
	must(t, err)
	engine, err := opa.New(ctx, b, opa.Options{Timeout: 10 * time.Second})
	must(t, err)
	f := &cacheFixture{store: store, engine: engine}
	f.clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, f.clock.Load()) }
	f.cached = New(store, engine, Options{Cache: cache.DefaultOptions(), DecisionBytes: 1 << 20, Now: now})
	f.oracle = New(store, engine, Options{Now: now})

	f.domain = &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	must(t, store.CreateDomain(ctx, f.domain))
	f.panel = &keys.User{AuthorityID: f.domain.ID, Name: "Panel", Email: "panel@acme.example.com", Groups: []string{"sys-1"}}
	f.admin = &keys.User{AuthorityID: f.domain.ID, Name: "Admin", Email: "admin@acme.example.com", SysAdmin: true}
	must(t, store.CreateUser(ctx, f.panel))
	must(t, store.CreateUser(ctx, f.admin))
	k := &keys.APIKey{Name: "booking panel", UserID: f.panel.ID, Scopes: []string{"systems.read", "control"}}
	s, err := store.CreateKey(ctx, k)
	must(t, err)
	f.booking, f.bookingID = string(s), k.ID
	s, err = store.CreateKey(ctx, &keys.APIKey{Name: "admin", UserID: f.admin.ID, Scopes: []string{"api_keys"}, Permissions: keys.PermissionAdmin})
	must(t, err)
	f.adminK = string(s)
	return f
}

func req(method, uri, key string) Request {
	h := http.Header{}
	if key != "" {
		h.Set("X-API-Key", key)
	}
	return Request{Method: method, URI: uri, Host: "acme.example.com", Header: h}
}

// decide asks the cached authorizer twice (the second answer comes from the decision cache)
// and the oracle once, and fails unless all three agree on allow, status and message.
func (f *cacheFixture) decide(t *testing.T, r Request) opa.Decision {
	t.Helper()
	ctx := t.Context()
	want := f.oracle.Authorize(ctx, r).Decision
	for i := range 2 {
		got := f.cached.Authorize(ctx, r).Decision
		if got.Allow != want.Allow || got.Status != want.Status || got.Message != want.Message {
			t.Fatalf("%s %s: cached answer %d = %+v, uncached = %+v", r.Method, r.URI, i, got, want)
		}
	}
	return want
}

func wantStatus(t *testing.T, d opa.Decision, allow bool, status int, msg string) {
	t.Helper()
	if d.Allow != allow || d.Status != status || (msg != "" && d.Message != msg) {
		t.Fatalf("decision = %+v, want allow %v, status %d, message %q", d, allow, status, msg)
	}
}

// TestCacheNeverStale warms the caches, changes what a decision depends on, and checks that
// the very next decision reflects the change.
func TestCacheNeverStale(t *testing.T) {
	const systems = "/api/engine/v2/systems/sys-1"
	const apiKeys = "/api/engine/v2/api_keys"
	steps := []struct {
		note   string
		req    func(f *cacheFixture) Request
		before func(t *testing.T, d opa.Decision)
		change func(t *testing.T, f *cacheFixture)
		after  func(t *testing.T, d opa.Decision)
	}{
		{
			note:   "scopes changed",
			req:    func(f *cacheFixture) Request { return req("GET", systems, f.booking) },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) {
				_, err := f.store.UpdateKey(t.Context(), f.bookingID, keys.KeyUpdate{Scopes: &[]string{"zones.read"}})
				must(t, err)
			},
			after: func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 403, "") },
		},
		{
			note:   "key deleted",
			req:    func(f *cacheFixture) Request { return req("GET", systems, f.booking) },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) { must(t, f.store.DeleteKey(t.Context(), f.bookingID)) },
			after:  func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 401, MsgUnknownKey) },
		},
		{
			note:   "user demoted",
			req:    func(f *cacheFixture) Request { return req("GET", apiKeys, f.adminK) },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) {
				u := *f.admin
				u.SysAdmin = false
				must(t, f.store.UpdateUser(t.Context(), &u))
			},
			after: func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 403, "") },
		},
		{
			note:   "user deleted",
			req:    func(f *cacheFixture) Request { return req("GET", systems, f.booking) },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) { must(t, f.store.DeleteUser(t.Context(), f.panel.ID)) },
			after:  func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 401, MsgUnknownKey) },
		},
		{
			note: "key expired",
			req: func(f *cacheFixture) Request {
				exp := time.Unix(0, f.clock.Load()).Unix() + 60
				_, err := f.store.UpdateKey(context.Background(), f.bookingID, keys.KeyUpdate{ExpiresAt: keys.NullableInt64{Set: true, Value: &exp}})
				if err != nil {
					panic(err)
				}
				return req("GET", systems, f.booking)
			},
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) { f.clock.Add(int64(61 * time.Second)) },
			after:  func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 401, MsgExpiredKey) },
		},
		{
			note:   "domain host changed",
			req:    func(f *cacheFixture) Request { return req("GET", systems, f.booking) },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) {
				d := *f.domain
				d.Domain = "elsewhere.example.com"
				must(t, f.store.UpdateDomain(t.Context(), &d))
			},
			after: func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 401, "authority not found") },
		},
		{
			note:   "domain deleted, key request",
			req:    func(f *cacheFixture) Request { return req("GET", systems, f.booking) },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) { must(t, f.store.DeleteDomain(t.Context(), f.domain.ID)) },
			after:  func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 401, "") },
		},
		{
			note:   "policy swapped, same revision",
			req:    func(f *cacheFixture) Request { return req("GET", "/api/engine/v2", "") },
			before: func(t *testing.T, d opa.Decision) { wantStatus(t, d, true, 200, "") },
			change: func(t *testing.T, f *cacheFixture) {
				b := closedRootPolicy(t)
				b.Manifest.Revision = f.engine.Revision() // a reload is a new policy whatever its revision
				must(t, f.engine.Swap(t.Context(), b))
			},
			after: func(t *testing.T, d opa.Decision) { wantStatus(t, d, false, 401, "") },
		},
	}
	for _, st := range steps {
		t.Run(st.note, func(t *testing.T) {
			f := newCacheFixture(t)
			r := st.req(f)
			st.before(t, f.decide(t, r))
			h0, _ := f.cached.DecisionCache().Stats()
			f.decide(t, r)
			if h1, _ := f.cached.DecisionCache().Stats(); h1 <= h0 {
				t.Fatalf("the decision cache was not used (hits %d → %d)", h0, h1)
			}
			st.change(t, f)
			st.after(t, f.decide(t, r))
		})
	}
}

// TestCacheSecretChecked checks that a cached key still verifies the presented secret, and
// that unknown ids and hosts are answered from the negative caches.
func TestCacheSecretChecked(t *testing.T) {
	f := newCacheFixture(t)
	const systems = "/api/engine/v2/systems/sys-1"
	wantStatus(t, f.decide(t, req("GET", systems, f.booking)), true, 200, "")
	id, secret, _ := keys.ParseKey(f.booking)
	// Another well-formed secret for the same id: the cache holds the id, not the answer.
	// (The first character carries 6 full bits, so any base64url letter is well formed there.)
	other := []byte(secret)
	other[0] = 'A'
	if secret[0] == 'A' {
		other[0] = 'B'
	}
	wrong := id + "." + string(other)
	if _, _, ok := keys.ParseKey(wrong); !ok {
		t.Fatal("test key is malformed")
	}
	for range 3 {
		wantStatus(t, f.decide(t, req("GET", systems, wrong)), false, 401, MsgUnknownKey)
	}
	unknown := strings.Repeat("0", 32) + "." + secret
	cs := f.cached.StoreCache()
	_, m0 := cs.Stats()
	for range 3 {
		wantStatus(t, f.cached.Authorize(t.Context(), req("GET", systems, unknown)).Decision, false, 401, MsgUnknownKey)
	}
	if _, m1 := cs.Stats(); m1 != m0+1 {
		t.Errorf("unknown id read the store %d times, want once", m1-m0)
	}
}

// closedRootPolicy is the built-in policy with the anonymous health route closed.
func closedRootPolicy(t *testing.T) *bundle.Bundle {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, "data.json") {
			b = []byte(strings.Replace(string(b), `"gate": "none", "anonymous": true`, `"gate": "none"`, 1))
		}
		must(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		return os.WriteFile(filepath.Join(dir, p), b, 0o600)
	})
	must(t, err)
	b, err := opa.LoadDir(dir)
	must(t, err)
	return b
}

// TestCacheRevocationConcurrent runs 8 deciders while the key is changed step by step, and a
// writer churns other records meanwhile (another key, another user, the domain: writes that
// invalidate the caches in parts, concurrently with the fills): once a change has returned, no
// decision that starts afterwards may give the answer of before.
func TestCacheRevocationConcurrent(t *testing.T) {
	f := newCacheFixture(t)
	ctx := t.Context()
	const systems = "/api/engine/v2/systems/sys-1"
	r := req("GET", systems, f.booking)
	// The steps, in order; want[i] is the only status allowed once step i has returned (the
	// steps are monotone: each one only takes away).
	want := []int{200, 403, 401}
	changes := []func(){
		nil,
		func() {
			_, err := f.store.UpdateKey(ctx, f.bookingID, keys.KeyUpdate{Scopes: &[]string{"zones.read"}})
			must(t, err)
		},
		func() { must(t, f.store.DeleteKey(ctx, f.bookingID)) },
	}
	// Later steps may already be visible to a decision that started before them.
	allowed := func(step int, status int) bool {
		for _, w := range want[step:] {
			if w == status {
				return true
			}
		}
		return false
	}
	var step atomic.Int32
	var stop atomic.Bool
	var wg sync.WaitGroup
	adminKeyID := f.cached.Authorize(ctx, req("GET", "/api/engine/v2/api_keys", f.adminK)).Key.ID
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			desc := strconv.Itoa(i)
			var err error
			switch i % 3 {
			case 0:
				_, err = f.store.UpdateKey(ctx, adminKeyID, keys.KeyUpdate{Description: &desc})
			case 1:
				_, err = f.store.ModifyUser(ctx, f.admin.ID, func(u *keys.User) error { u.Name = "Admin " + desc; return nil })
			case 2:
				_, err = f.store.ModifyDomain(ctx, f.domain.ID, func(d *keys.Domain) error { d.Description = desc; return nil })
			}
			must(t, err)
			time.Sleep(time.Millisecond)
		}
	})
	var bad atomic.Int64
	var decisions atomic.Int64
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				s := int(step.Load())
				d := f.cached.Authorize(ctx, r).Decision
				decisions.Add(1)
				if !allowed(s, d.Status) || (d.Allow && s > 0) {
					bad.Add(1)
					t.Errorf("after step %d returned: status %d (allow %v), want %v", s, d.Status, d.Allow, want[s:])
				}
			}
		})
	}
	for i := 1; i < len(changes); i++ {
		time.Sleep(50 * time.Millisecond)
		changes[i]()
		step.Store(int32(i))
	}
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if decisions.Load() == 0 {
		t.Fatal("no decisions made")
	}
	t.Logf("%d decisions, %d wrong", decisions.Load(), bad.Load())
}

// TestCacheInvalidatesPerRecord checks that a write invalidates the cached decisions that
// depended on the record it wrote, and only those: decisions of other keys, users and domains
// stay cached (the decision cache's hit counter proves it), while every decision is still the
// uncached oracle's.
func TestCacheInvalidatesPerRecord(t *testing.T) {
	f := newCacheFixture(t)
	ctx := t.Context()
	const systems = "/api/engine/v2/systems/sys-1"
	const apiKeys = "/api/engine/v2/api_keys"
	// A second domain with its own user and key.
	other := &keys.Domain{Name: "Other", Domain: "other.example.com"}
	must(t, f.store.CreateDomain(ctx, other))
	ou := &keys.User{AuthorityID: other.ID, Name: "Kiosk", Email: "kiosk@other.example.com"}
	must(t, f.store.CreateUser(ctx, ou))
	ok := &keys.APIKey{Name: "kiosk", UserID: ou.ID, Scopes: []string{"systems.read"}}
	okSecret, err := f.store.CreateKey(ctx, ok)
	must(t, err)
	onHost := func(r Request, host string) Request { r.Host = host; return r }

	booking := req("GET", systems, f.booking)
	admin := req("GET", apiKeys, f.adminK)
	kiosk := onHost(req("GET", systems, string(okSecret)), "other.example.com")
	anon := req("GET", "/api/engine/v2", "")
	// The booking key on a host without a domain: 401 authority not found.
	nowhere := onHost(req("GET", systems, f.booking), "new.example.com")
	all := map[string]Request{"booking": booking, "admin": admin, "kiosk": kiosk, "anon": anon, "nowhere": nowhere}

	// The records each request's decision depends on; a test of "stays cached" is skipped
	// for the rare ids whose versions collide (1 in 65,536 per pair).
	key := func(id string) keys.Change { return keys.Change{Kind: keys.KindKey, ID: id} }
	user := func(id string) keys.Change { return keys.Change{Kind: keys.KindUser, ID: id} }
	dom := func(id string) keys.Change { return keys.Change{Kind: keys.KindDomain, ID: id} }
	adminKeyID := f.cached.Authorize(ctx, admin).Key.ID
	records := map[string][]keys.Change{
		"booking": {key(f.bookingID), user(f.panel.ID), dom(f.domain.ID)},
		"admin":   {key(adminKeyID), user(f.admin.ID), dom(f.domain.ID)},
		"kiosk":   {key(ok.ID), user(ou.ID), dom(other.ID)},
		"anon":    {dom(f.domain.ID)},
		"nowhere": {key(f.bookingID), user(f.panel.ID), dom(f.domain.ID)},
	}
	cs := f.cached.StoreCache()
	collides := func(name string, changed keys.Change) bool {
		for _, c := range records[name] {
			if c != changed && cs.SharesVersion(c, changed) {
				return true
			}
		}
		return false
	}
	// hit reports whether the cached authorizer answered r from its decision cache, and
	// checks its answer against the oracle's.
	hit := func(t *testing.T, name string) bool {
		t.Helper()
		r := all[name]
		want := f.oracle.Authorize(ctx, r).Decision
		h0, _ := f.cached.DecisionCache().Stats()
		got := f.cached.Authorize(ctx, r).Decision
		h1, _ := f.cached.DecisionCache().Stats()
		if got.Allow != want.Allow || got.Status != want.Status || got.Message != want.Message {
			t.Fatalf("%s: cached answer %+v, uncached %+v", name, got, want)
		}
		return h1 > h0
	}
	warm := func(t *testing.T) {
		t.Helper()
		for name := range all {
			hit(t, name)
			if !hit(t, name) {
				t.Fatalf("%s: not answered from the decision cache when nothing changed", name)
			}
		}
	}
	// check makes change, then requires a miss for each of invalidated and a hit for every
	// other request (unless its records collide with the changed one).
	check := func(t *testing.T, changed keys.Change, change func(), invalidated ...string) {
		t.Helper()
		warm(t)
		change()
		for name := range all {
			switch {
			case slices.Contains(invalidated, name):
				if hit(t, name) {
					t.Errorf("%s: served from the decision cache after a record it depends on changed", name)
				}
			case collides(name, changed):
				t.Logf("%s: its records share a version with the changed one; not checked", name)
			case !hit(t, name):
				t.Errorf("%s: dropped from the decision cache by a change it does not depend on", name)
			}
		}
	}

	t.Run("key scopes changed", func(t *testing.T) {
		check(t, key(f.bookingID), func() {
			_, err := f.store.UpdateKey(ctx, f.bookingID, keys.KeyUpdate{Scopes: &[]string{"zones.read"}})
			must(t, err)
		}, "booking", "nowhere")
		wantStatus(t, f.decide(t, booking), false, 403, "")
		_, err := f.store.UpdateKey(ctx, f.bookingID, keys.KeyUpdate{Scopes: &[]string{"systems.read", "control"}})
		must(t, err)
		wantStatus(t, f.decide(t, booking), true, 200, "")
	})
	t.Run("user demoted", func(t *testing.T) {
		check(t, user(f.admin.ID), func() {
			u := *f.admin
			u.SysAdmin = false
			must(t, f.store.UpdateUser(ctx, &u))
		}, "admin")
		wantStatus(t, f.decide(t, admin), false, 403, "")
	})
	t.Run("other domain changed", func(t *testing.T) {
		// Every domain change also drops what was looked up on a host without a domain
		// ("nowhere"), so it is neither required to hit nor to miss here.
		delete(all, "nowhere")
		defer func() { all["nowhere"] = nowhere }()
		check(t, dom(other.ID), func() {
			_, err := f.store.ModifyDomain(ctx, other.ID, func(d *keys.Domain) error { d.Description = "changed"; return nil })
			must(t, err)
		}, "kiosk")
	})
	t.Run("domain created for a host without one", func(t *testing.T) {
		warm(t)
		wantStatus(t, f.decide(t, nowhere), false, 401, "authority not found")
		nd := &keys.Domain{Name: "New", Domain: "new.example.com"}
		must(t, f.store.CreateDomain(ctx, nd))
		res := f.cached.Authorize(ctx, nowhere)
		if res.Input.Domain == nil || res.Input.Domain.ID != nd.ID {
			t.Fatalf("after the domain was created, the request's domain is %+v", res.Input.Domain)
		}
		wantStatus(t, f.decide(t, nowhere), false, 401, "authority domain does not match token's")
		for _, name := range []string{"booking", "kiosk", "anon"} {
			if !collides(name, dom(nd.ID)) && !hit(t, name) {
				t.Errorf("%s: dropped from the decision cache by the creation of an unrelated domain", name)
			}
		}
	})
	t.Run("domain host moved to a host without one", func(t *testing.T) {
		moved := onHost(req("GET", systems, string(okSecret)), "moved.example.com")
		wantStatus(t, f.decide(t, moved), false, 401, "authority not found")
		wantStatus(t, f.decide(t, kiosk), true, 200, "")
		_, err := f.store.ModifyDomain(ctx, other.ID, func(d *keys.Domain) error { d.Domain = "moved.example.com"; return nil })
		must(t, err)
		wantStatus(t, f.decide(t, moved), true, 200, "")
		wantStatus(t, f.decide(t, kiosk), false, 401, "authority not found")
	})
	t.Run("key created with an id cached as unknown", func(t *testing.T) {
		k, _, _, err := f.store.KeyForAuth(ctx, f.bookingID)
		must(t, err)
		must(t, f.store.DeleteKey(ctx, f.bookingID))
		wantStatus(t, f.decide(t, booking), false, 401, MsgUnknownKey)
		hash := k.Hash
		k.Hash = ""
		n, err := f.store.ImportKeys(ctx, func(yield func(keys.BulkKey) bool) { yield(keys.BulkKey{Key: *k, Hash: hash}) })
		must(t, err)
		if n != 1 {
			t.Fatalf("imported %d keys", n)
		}
		wantStatus(t, f.decide(t, booking), true, 200, "")
	})
	t.Run("user deleted, cascade", func(t *testing.T) {
		warm(t)
		must(t, f.store.DeleteUser(ctx, f.panel.ID))
		wantStatus(t, f.decide(t, booking), false, 401, MsgUnknownKey)
		if !collides("kiosk", user(f.panel.ID)) && !collides("kiosk", key(f.bookingID)) && !hit(t, "kiosk") {
			t.Error("kiosk: dropped from the decision cache by the deletion of another domain's user")
		}
	})
}

package authz

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// benchLatency runs op b.N times, timing each call, and reports the median and the 99th
// percentile as p50-ns and p99-ns next to ns/op (the clock reads add about 50 ns to ns/op), and
// the process's CPU time per call as cpu-ns/op: the garbage collector's work included, and
// less disturbed than the clock by other processes on a shared machine.
func benchLatency(b *testing.B, op func()) {
	b.Helper()
	samples := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range b.N {
		t0 := time.Now()
		op()
		samples[i] = time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// benchFixture is a real Badger store on disk with one booking-panel key, and the built-in
// policy.
func benchFixture(b *testing.B) (*badgerstore.Store, *opa.Engine, string) {
	b.Helper()
	ctx := context.Background()
	store, err := badgerstore.Open(b.TempDir())
	bmust(b, err)
	b.Cleanup(func() { _ = store.Close() })
	bnd, err := opa.Builtin()
	bmust(b, err)
	engine, err := opa.New(ctx, bnd, opa.Options{})
	bmust(b, err)
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	bmust(b, store.CreateDomain(ctx, d))
	u := &keys.User{AuthorityID: d.ID, Name: "Panel", Email: "panel@acme.example.com", Groups: []string{"sys-1"}}
	bmust(b, store.CreateUser(ctx, u))
	secret, err := store.CreateKey(ctx, &keys.APIKey{Name: "panel", UserID: u.ID, Scopes: []string{"systems.read", "control"}})
	bmust(b, err)
	return store, engine, string(secret)
}

// BenchmarkAuthorize is one whole in-process decision (extract the key, verify it, evaluate
// the policy): cold (no caches: Badger and Rego every time), keycache (verified-key and host
// caches warm, the policy evaluated every time) and cached (the same request again, answered
// by the decision cache).
func BenchmarkAuthorize(b *testing.B) {
	store, engine, key := benchFixture(b)
	r := Request{
		Method: "GET", URI: "/api/engine/v2/systems/sys-1", Host: "acme.example.com",
		Header: http.Header{"X-Api-Key": {key}},
	}
	cases := []struct {
		name string
		a    *Authorizer
	}{
		{"cold", New(store, engine, Options{})},
		{"keycache", New(store, engine, Options{Cache: cache.DefaultOptions()})},
		{"cached", New(store, engine, Options{Cache: cache.DefaultOptions(), DecisionBytes: 1 << 20})},
		// cached+usage is what serve runs: the cached path plus recording the key's use.
		{"cached+usage", New(store, engine, Options{Cache: cache.DefaultOptions(), DecisionBytes: 1 << 20, Usage: keys.NewUsageRecorder(store, nil)})},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			if d := tc.a.Authorize(ctx, r).Decision; !d.Allow {
				b.Fatalf("not allowed: %+v", d)
			}
			benchLatency(b, func() { tc.a.Authorize(ctx, r) })
		})
	}
}

// BenchmarkAuthorizeKinds is one whole uncached decision of each kind through the credential
// path (the key and host caches warm, no decision cache: the policy is evaluated every time),
// as an uncached request of a gateway meets it: each 401 and 403 cause the policy decides, an
// allow, and a path no route of the table matches. Each case checks its status and message
// first.
func BenchmarkAuthorizeKinds(b *testing.B) {
	store, engine, panel := benchFixture(b)
	ctx := context.Background()
	ds, err := store.ListDomains(ctx)
	bmust(b, err)
	acme := ds[0]
	users, err := store.ListUsers(ctx, acme.ID)
	bmust(b, err)
	user := users[0]
	newKey := func(domain *keys.Domain, u *keys.User, k *keys.APIKey) string {
		b.Helper()
		if u == nil {
			u = &keys.User{AuthorityID: domain.ID, Name: "U " + k.Name, Email: k.Name + "@" + domain.Domain}
			bmust(b, store.CreateUser(ctx, u))
		}
		k.UserID = u.ID
		secret, err := store.CreateKey(ctx, k)
		bmust(b, err)
		return string(secret)
	}
	other := &keys.Domain{Name: "Other", Domain: "other.example.com"}
	bmust(b, store.CreateDomain(ctx, other))
	var (
		zones   = newKey(acme, user, &keys.APIKey{Name: "zones", Scopes: []string{"zones.read"}})
		apiKeys = newKey(acme, user, &keys.APIKey{Name: "api keys", Scopes: []string{"api_keys.read"}})
		guest   = newKey(acme, user, &keys.APIKey{Name: "guest", Scopes: []string{"guest"}})
		kiosk   = newKey(acme, user, &keys.APIKey{Name: "kiosk", Scopes: []string{"public.read"}})
		foreign = newKey(other, nil, &keys.APIKey{Name: "foreign", Scopes: []string{"systems.read"}})
		fenced  = newKey(acme, user, &keys.APIKey{Name: "fenced", Scopes: []string{"systems.read"}, AllowedCIDRs: []string{"10.0.0.0/8"}})
	)
	const host = "acme.example.com"
	req := func(method, uri, key string) Request {
		r := Request{Method: method, URI: uri, Host: host, Header: http.Header{}, ClientIP: "192.0.2.1"}
		if key != "" {
			r.Header.Set("X-Api-Key", key)
		}
		return r
	}
	crossSite := req("POST", "/api/engine/v2/systems/sys-1/Display_1/power_on?api-key="+panel, "")
	crossSite.Header.Set("Sec-Fetch-Site", "cross-site")
	unknownHost := req("GET", "/api/engine/v2/systems/sys-1", panel)
	unknownHost.Host = "nowhere.example.com"
	cases := []struct {
		name    string
		r       Request
		status  int
		message string
	}{
		{"allow", req("GET", "/api/engine/v2/systems/sys-1", panel), 200, "allowed"},
		{"unlisted", req("GET", "/api/staff/v1/bookings", kiosk), 200, "allowed"},
		{"anonymous", req("GET", "/api/engine/v2", ""), 200, "anonymous route"},
		{"authenticated", req("GET", "/api/engine/v2/users/current", zones), 200, "authenticated route"},
		{"401-no-key", req("GET", "/api/engine/v2/systems/sys-1", ""), 401, "missing credentials"},
		{"401-unknown-host", unknownHost, 401, "authority not found"},
		{"401-other-domain", req("GET", "/api/engine/v2/systems/sys-1", foreign), 401, "authority domain does not match token's"},
		{"403-method", req("PROPFIND", "/api/engine/v2/systems/sys-1", panel), 403, "method not allowed"},
		{"403-ambiguous", req("GET", "/api/engine/v2/api_keys/INSPECT", apiKeys), 403, "ambiguous path"},
		{"403-client-address", req("GET", "/api/engine/v2/systems/sys-1", fenced), 403, "client address not allowed for this key"},
		{"403-cross-site", crossSite, 403, "cross-site request with a cookie or URL key"},
		{"403-scope", req("GET", "/api/engine/v2/systems/sys-1", zones), 403, "missing scope: systems.read or public.read"},
		{"403-guest", req("GET", "/api/engine/v2/systems/sys-2", guest), 403, "guest access denied: the request is outside the guest's roles"},
		{"403-gate", req("GET", "/api/engine/v2/api_keys", apiKeys), 403, "requires admin permissions"},
	}
	a := New(store, engine, Options{Cache: cache.DefaultOptions()})
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			if d := a.Authorize(ctx, tc.r).Decision; d.Status != tc.status || d.Message != tc.message {
				b.Fatalf("decision %+v, want %d %q", d, tc.status, tc.message)
			}
			benchLatency(b, func() { a.Authorize(ctx, tc.r) })
		})
	}
}

// BenchmarkAuthenticate is key verification alone: the Badger store (three JSON records
// decoded) and the verified-key cache (one SHA-256 and a constant-time compare).
func BenchmarkAuthenticate(b *testing.B) {
	store, _, key := benchFixture(b)
	type authenticator interface {
		Authenticate(ctx context.Context, plaintext string, now time.Time) (*keys.AuthResult, error)
	}
	for _, tc := range []struct {
		name string
		s    authenticator
	}{{"store", store}, {"cache", cache.New(store, cache.DefaultOptions())}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, now := context.Background(), time.Now()
			if _, err := tc.s.Authenticate(ctx, key, now); err != nil {
				b.Fatal(err)
			}
			benchLatency(b, func() { _, _ = tc.s.Authenticate(ctx, key, now) })
		})
	}
}

// BenchmarkEvaluate is one evaluation of the built-in policy on a typed input, as the
// decision path makes it (see also internal/opa BenchmarkDecide).
func BenchmarkEvaluate(b *testing.B) {
	_, engine, _ := benchFixture(b)
	in := &opa.Input{
		Request: opa.Request{Method: "GET", Path: "/api/engine/v2/systems/sys-1", Host: "acme.example.com", Protocol: "http", Query: map[string][]string{}},
		Domain:  &opa.Domain{ID: "authority-1", Name: "Acme", Domain: "acme.example.com"},
		Key:     &opa.Key{ID: "k", AuthorityID: "authority-1", Scopes: []string{"systems.read", "control"}, Permissions: "user", Source: "header"},
		User:    &opa.User{ID: "u", AuthorityID: "authority-1", Name: "Panel", Groups: []string{"sys-1"}},
	}
	ctx := context.Background()
	benchLatency(b, func() { engine.Decide(ctx, in) })
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func bmust(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAuthorizeChurn is the decision cache under admin churn: 1,000 distinct requests (50
// keys of 10 users, 20 paths each) decided round-robin, with one admin write (a key's
// description, or every third write a user's name: changes that alter no decision) every N
// decisions. It reports hit-% of the decision cache over the timed loop.
func BenchmarkAuthorizeChurn(b *testing.B) {
	store, engine, _ := benchFixture(b)
	ctx := context.Background()
	ds, err := store.ListDomains(ctx)
	bmust(b, err)
	var users []*keys.User
	var keyIDs []string
	var reqs []Request
	for i := range 10 {
		u := &keys.User{AuthorityID: ds[0].ID, Name: fmt.Sprintf("user %d", i), Email: fmt.Sprintf("u%d@acme.example.com", i), Groups: []string{"sys-1"}}
		bmust(b, store.CreateUser(ctx, u))
		users = append(users, u)
		for j := range 5 {
			k := &keys.APIKey{Name: fmt.Sprintf("key %d-%d", i, j), UserID: u.ID, Scopes: []string{"systems.read"}}
			secret, err := store.CreateKey(ctx, k)
			bmust(b, err)
			keyIDs = append(keyIDs, k.ID)
			for p := range 20 {
				reqs = append(reqs, Request{Method: "GET", URI: fmt.Sprintf("/api/engine/v2/systems/sys-%d", p),
					Host: "acme.example.com", Header: http.Header{"X-Api-Key": {string(secret)}}})
			}
		}
	}
	for _, every := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("write-every-%d", every), func(b *testing.B) {
			a := New(store, engine, Options{Cache: cache.DefaultOptions(), DecisionBytes: 16 << 20})
			for _, r := range reqs {
				a.Authorize(ctx, r)
			}
			h0, m0 := a.DecisionCache().Stats()
			w := 0
			b.ResetTimer()
			for i := range b.N {
				if i%every == every-1 {
					desc := strconv.Itoa(i)
					if w%3 == 2 {
						_, err := store.ModifyUser(ctx, users[w%len(users)].ID, func(u *keys.User) error { u.Name = "user " + desc; return nil })
						bmust(b, err)
					} else {
						_, err := store.UpdateKey(ctx, keyIDs[w%len(keyIDs)], keys.KeyUpdate{Description: &desc})
						bmust(b, err)
					}
					w++
				}
				a.Authorize(ctx, reqs[i%len(reqs)])
			}
			b.StopTimer()
			h1, m1 := a.DecisionCache().Stats()
			if n := (h1 - h0) + (m1 - m0); n > 0 {
				b.ReportMetric(100*float64(h1-h0)/float64(n), "hit-%")
			}
		})
	}
}

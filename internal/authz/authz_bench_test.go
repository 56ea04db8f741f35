package authz

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// benchLatency runs op b.N times, timing each call, and reports the median and the 99th
// percentile as p50-ns and p99-ns next to ns/op (the clock reads add about 50 ns to ns/op).
func benchLatency(b *testing.B, op func()) {
	b.Helper()
	samples := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		op()
		samples[i] = time.Since(t0)
	}
	b.StopTimer()
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

func bmust(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

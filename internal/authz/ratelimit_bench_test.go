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

// BenchmarkLimits is the cost of per-key limits (docs/limits.md) on one in-process decision,
// same store, policy and request, with the verified-key cache warm (keycache: the policy runs
// every time) and with the decision cache too (cached):
//   - off: a key without limits, no client address (as before limits existed);
//   - off+ip: the same key, with a client address in the input;
//   - on: a key with a 3-network allow-list that admits the client and a rate limit it never
//     reaches (1e6/s), so every decision runs the allow-list rule and takes a token.
func BenchmarkLimits(b *testing.B) {
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
	u := &keys.User{AuthorityID: d.ID, Name: "Panel", Email: "panel@acme.example.com"}
	bmust(b, store.CreateUser(ctx, u))
	plain, err := store.CreateKey(ctx, &keys.APIKey{Name: "plain", UserID: u.ID, Scopes: []string{"systems.read", "control"}})
	bmust(b, err)
	limited, err := store.CreateKey(ctx, &keys.APIKey{
		Name: "limited", UserID: u.ID, Scopes: []string{"systems.read", "control"},
		AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/32", "198.51.100.0/24"},
		RateLimit:    &keys.RateLimit{Rate: keys.MaxRate, Burst: keys.MaxBurst},
	})
	bmust(b, err)
	request := func(key, ip string) Request {
		return Request{
			Method: "GET", URI: "/api/engine/v2/systems/sys-1", Host: "acme.example.com",
			Header: http.Header{"X-Api-Key": {key}}, ClientIP: ip,
		}
	}
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"keycache", Options{Cache: cache.DefaultOptions()}},
		{"cached", Options{Cache: cache.DefaultOptions(), DecisionBytes: 1 << 20}},
	} {
		for _, l := range []struct {
			name string
			r    Request
		}{
			{"off", request(string(plain), "")},
			{"off+ip", request(string(plain), "198.51.100.7")},
			{"on", request(string(limited), "198.51.100.7")},
		} {
			b.Run(c.name+"/"+l.name, func(b *testing.B) {
				a := New(store, engine, c.o)
				if d := a.Authorize(ctx, l.r).Decision; !d.Allow {
					b.Fatalf("not allowed: %+v", d)
				}
				// The median too: on a shared machine the mean is mostly other processes' time.
				samples := make([]time.Duration, 0, 1<<16)
				b.ReportAllocs()
				for b.Loop() {
					t0 := time.Now()
					a.Authorize(ctx, l.r)
					if len(samples) < cap(samples) {
						samples = append(samples, time.Since(t0))
					}
				}
				slices.Sort(samples)
				b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
				if n := a.RateLimited(); n != 0 {
					b.Fatalf("%d decisions were limited", n)
				}
			})
		}
	}
}

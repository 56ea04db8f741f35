package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// BenchmarkDecisionEndpoint is POST /v1/data/keyauthz/decision in-process (httptest server on
// loopback, keep-alive client): one booking-panel request, with the caches off (cold), with the
// key caches only (keycache) and with the decision cache too (cached). serial reports p50 and
// p99 of one connection; parallel runs GOMAXPROCS×4 clients and reports throughput as ns/op.
func BenchmarkDecisionEndpoint(b *testing.B) {
	ctx := context.Background()
	store, err := badgerstore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	bnd, err := opa.Builtin()
	if err != nil {
		b.Fatal(err)
	}
	engine, err := opa.New(ctx, bnd, opa.Options{})
	if err != nil {
		b.Fatal(err)
	}
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	u := &keys.User{Name: "Panel", Email: "panel@acme.example.com", Groups: []string{"sys-1"}}
	if err := store.CreateDomain(ctx, d); err != nil {
		b.Fatal(err)
	}
	u.AuthorityID = d.ID
	if err := store.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	secret, err := store.CreateKey(ctx, &keys.APIKey{Name: "panel", UserID: u.ID, Scopes: []string{"systems.read", "control"}})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"input": map[string]any{
		"method": "GET", "path": "/api/engine/v2/systems/sys-1", "host": "acme.example.com",
		"headers": map[string]string{"x-api-key": string(secret)},
	}})
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		a    *authz.Authorizer
	}{
		{"cold", authz.New(store, engine, authz.Options{Logger: logger})},
		{"keycache", authz.New(store, engine, authz.Options{Cache: cache.DefaultOptions(), Logger: logger})},
		{"cached", authz.New(store, engine, authz.Options{Cache: cache.DefaultOptions(), DecisionBytes: 1 << 20, Logger: logger})},
	} {
		ts := httptest.NewServer(New(Deps{Logger: logger, Store: store, Engine: engine, Authorizer: tc.a}))
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		url := ts.URL + "/v1/data/keyauthz/decision"
		post := func() error {
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err := post(); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			samples := make([]time.Duration, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if err := post(); err != nil {
					b.Fatal(err)
				}
				samples[i] = time.Since(t0)
			}
			b.StopTimer()
			slices.Sort(samples)
			b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := post(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		ts.Close()
	}
}

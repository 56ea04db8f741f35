// Package policytest runs keyauthz's Rego tests (policy_test/*_test.rego against policies/)
// from go test, one subtest per Rego test and per table row, and keeps the golden route index
// in testdata/route_index/data.json in step with the policy (rewrite it with -update).
package policytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

var update = flag.Bool("update", false, "rewrite "+indexFixture+" from the policy and its route table")

// indexFixture holds the route table and the index built from it, which the Rego table tests
// use as keyauthz uses its load-time index (building it in each traced test is too slow).
const indexFixture = "testdata/route_index/data.json"

// minResults guards against a load that finds no tests (a moved directory, a broken glob).
const minResults = 100

// TestRego runs every Rego test of policies/ and policy_test/ through OPA's tester.
func TestRego(t *testing.T) {
	modules, store, err := tester.Load([]string{"../policies", "."}, nil)
	if err != nil {
		t.Fatalf("load rego: %v", err)
	}
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithEnablePrintStatements(true)).
		SetStore(store).
		CapturePrintOutput(true).
		SetTimeout(time.Minute).
		SetModules(modules).
		RunTests(t.Context(), nil)
	if err != nil {
		t.Fatalf("run rego tests: %v", err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b *tester.Result) int {
		return strings.Compare(a.Package+"."+a.Name, b.Package+"."+b.Name)
	})

	found := 0
	for _, r := range results {
		found += max(1, countLeaves(r.SubResults))
		t.Run(strings.TrimPrefix(r.Package, "data.")+"."+r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Fatalf("%s: %s: error: %v", r.Location, r.Name, r.Error)
			case r.Skip:
				t.Skipf("%s: %s: skipped", r.Location, r.Name)
			}
			r.SubResults.Iter(func(path []string, sr *tester.SubResult) bool {
				if len(sr.SubResults) == 0 {
					t.Run(strings.Join(path, "/"), func(t *testing.T) {
						if sr.Fail {
							t.Errorf("%s: %s[%q] failed", r.Location, r.Name, strings.Join(path, "/"))
						}
					})
				}
				return true
			})
			if r.Fail {
				t.Errorf("%s: %s failed\n%s", r.Location, r.Name, r.Output)
			}
		})
	}
	if found < minResults {
		t.Errorf("found %d Rego test results, want at least %d", found, minResults)
	}
}

func countLeaves(m tester.SubResultMap) int {
	n := 0
	m.Iter(func(_ []string, sr *tester.SubResult) bool {
		if len(sr.SubResults) == 0 {
			n++
		}
		return true
	})
	return n
}

// TestRouteIndexFixture checks that the golden index is the one the policy builds from the
// current route table; with -update it rewrites it.
func TestRouteIndexFixture(t *testing.T) {
	rs, err := rego.New(
		rego.Query(`x := {"table": data.keyauthz.routes.table, "index": data.keyauthz.routing.built_index}`),
		rego.Load([]string{"../policies"}, nil),
	).Eval(t.Context())
	if err != nil || len(rs) != 1 {
		t.Fatalf("build index: %v (%d results)", err, len(rs))
	}
	want, err := json.MarshalIndent(rs[0].Bindings["x"], "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile(indexFixture, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(indexFixture)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `go test ./policy_test -run TestRouteIndexFixture -update`", indexFixture)
	}
}

// TestBuiltIndexRejectsDuplicateRoutes checks what a Rego test cannot: two routes with the same
// method and pattern make built_index fail with a conflict error, so such a table never loads.
func TestBuiltIndexRejectsDuplicateRoutes(t *testing.T) {
	src, err := os.ReadFile("../policies/keyauthz/routing.rego")
	if err != nil {
		t.Fatal(err)
	}
	// The index holds each route's facts, which facts.rego states (keyauthz.facts.route_facts).
	facts, err := os.ReadFile("../policies/keyauthz/facts.rego")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		table []any
	}{
		{"same path", []any{
			map[string]any{"methods": []any{"GET"}, "path": "/a/:id", "scopes": []any{"a"}, "access": "read", "gate": "none"},
			map[string]any{"methods": []any{"GET", "POST"}, "path": "/a/:id", "scopes": []any{"b"}, "access": "read", "gate": "none"},
		}},
		{"same pattern, other parameter name", []any{
			map[string]any{"methods": []any{"GET"}, "path": "/a/:id", "gate": "none", "authenticated": true},
			map[string]any{"methods": []any{"get"}, "path": "/a/:name", "gate": "none", "authenticated": true},
		}},
		{"same prefix", []any{
			map[string]any{"methods": []any{"*"}, "path": "/s/*", "scopes": []any{"s"}, "access": "read", "gate": "none"},
			map[string]any{"methods": []any{"*"}, "path": "/s/*", "scopes": []any{"s"}, "access": "write", "gate": "none"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rego.New(
				rego.Query("data.keyauthz.routing.built_index"),
				rego.Module("routing.rego", string(src)),
				rego.Module("facts.rego", string(facts)),
				rego.Store(inmem.NewFromObject(map[string]any{
					"keyauthz": map[string]any{"routes": map[string]any{"table": tt.table}},
				})),
			).Eval(t.Context())
			var terr *topdown.Error
			if !errors.As(err, &terr) || terr.Code != topdown.ConflictErr {
				t.Errorf("built_index error = %v, want %s", err, topdown.ConflictErr)
			}
		})
	}
}

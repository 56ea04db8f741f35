package opa

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// TestDecisionCostDoesNotGrowWithTheTable checks the rule of
// docs/architecture.md#performance-targets that evaluation must not grow with the route table:
// the same request against the built-in table and against that table with 2,000 more routes
// makes the same number of allocations (a deterministic stand-in for time).
func TestDecisionCostDoesNotGrowWithTheTable(t *testing.T) {
	small, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	large, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	routes := large.Data["keyauthz"].(map[string]any)["routes"].(map[string]any)
	table := append([]any(nil), routes["table"].([]any)...)
	for i := range 2000 {
		table = append(table, map[string]any{
			"methods": []any{"GET", "POST"},
			"path":    fmt.Sprintf("/api/padding/r%d/items", i),
			"scopes":  []any{fmt.Sprintf("pad%d", i)},
			"access":  "read",
			"gate":    "none",
		})
	}
	routes["table"] = table

	in := &Input{
		Request: request("GET", "/api/engine/v2/systems/sys-1/Display_1/power"),
		Domain:  &Domain{ID: "dom-1", Name: "Local", Domain: "localhost"},
		Key:     keyWith("systems.read", "control"),
		User:    &User{ID: "u", AuthorityID: "dom-1", Name: "Ann", Support: true, Groups: []string{"sys-1"}},
	}
	allocs := map[string]float64{}
	for name, b := range map[string]any{"built-in": small, "built-in + 2000 routes": large} {
		e, err := New(t.Context(), b.(*bundle.Bundle), Options{Timeout: time.Minute})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := e.Decide(context.Background(), in).Decision; !d.Allow {
			t.Fatalf("%s: %+v, want an allow", name, d)
		}
		allocs[name] = testing.AllocsPerRun(50, func() { e.Decide(context.Background(), in) })
	}
	// A scan of the table would add thousands of allocations; a few more come and go with the
	// garbage collector (sync.Pool reuse differs when the larger index is in memory), so the
	// margin is 5 %, not a fixed handful.
	if s, l := allocs["built-in"], allocs["built-in + 2000 routes"]; l > s*1.05 {
		t.Errorf("a decision allocates %v times with the built-in table and %v with 2,000 more routes: evaluation grows with the table", s, l)
	}
}

// TestScopeNames checks the scope list GET /api/engine/v2/scopes serves: every scope of the
// built-in table, public and guest, each once, sorted.
func TestScopeNames(t *testing.T) {
	b, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	got := ScopeNames(b)
	for _, want := range []string{"api_keys", "control", "guest", "metadata", "public", "root", "systems", "users", "zones", "o_auth_applications"} {
		if !slices.Contains(got, want) {
			t.Errorf("ScopeNames lacks %q: %v", want, got)
		}
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("ScopeNames is not sorted and unique: %v", got)
	}
}

package opa

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
)

// indexPath is where the materialised route index goes in the data (data.keyauthz.routes.index).
var indexPath = []string{"keyauthz", "routes", "index"}

// WithRouteIndex returns a copy of b whose data holds the route index at
// data.keyauthz.routes.index: IndexQuery evaluated once against b's own modules and route
// table, exactly as New does when it loads a policy. A standalone OPA serving the copy then
// finds the index in the data instead of computing it on every evaluation. b is not modified;
// the copy shares b's modules. It returns an error when b does not compile or the index
// cannot be built.
func WithRouteIndex(ctx context.Context, b *bundle.Bundle) (*bundle.Bundle, error) {
	if b == nil {
		return nil, errors.New("opa: no policy bundle")
	}
	_, data, err := compileWithIndex(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("opa: %w", err)
	}
	// Plain JSON values (json.Number for numbers), as a bundle reader would produce them, so
	// that a signature computed over the copy's data matches the data.json written from it.
	var plain any = data
	if err := util.RoundTrip(&plain); err != nil {
		return nil, fmt.Errorf("opa: route index: %w", err)
	}
	out := *b
	out.Manifest = b.Manifest.Copy()
	out.Data = plain.(map[string]any)
	return &out, nil
}

// ScopeNames lists the scopes b's route table names, plus public and guest, sorted: what
// GET /api/engine/v2/scopes answers.
func ScopeNames(b *bundle.Bundle) []string {
	set := map[string]bool{"public": true, "guest": true}
	var table any = b.Data
	for _, p := range []string{"keyauthz", "routes", "table"} {
		m, _ := table.(map[string]any)
		table = m[p]
	}
	rows, _ := table.([]any)
	for _, r := range rows {
		route, _ := r.(map[string]any)
		list, _ := route["scopes"].([]any)
		for _, s := range list {
			if name, ok := s.(string); ok {
				set[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// buildIndex evaluates IndexQuery once against the policy's own data.
func buildIndex(ctx context.Context, compiler *ast.Compiler, data map[string]any) (any, error) {
	if data == nil {
		data = map[string]any{}
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false))
	rs, err := rego.New(
		rego.Query(IndexQuery),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
	).Eval(ctx)
	if err != nil {
		return nil, fmt.Errorf("build route index (%s): %w", IndexQuery, err)
	}
	switch {
	case len(rs) == 0:
		return nil, fmt.Errorf("build route index: %s is undefined", IndexQuery)
	case len(rs) > 1 || len(rs[0].Expressions) != 1:
		return nil, fmt.Errorf("build route index: %s has %d results", IndexQuery, len(rs))
	}
	return rs[0].Expressions[0].Value, nil
}

// withValueAt returns a copy of data with v at path, copying only the maps along the path,
// so that the caller's bundle is never modified.
func withValueAt(data map[string]any, path []string, v any) (map[string]any, error) {
	root := make(map[string]any, len(data)+1)
	for k, x := range data {
		root[k] = x
	}
	cur := root
	for i, key := range path {
		if i == len(path)-1 {
			cur[key] = v
			break
		}
		var next map[string]any
		switch x := cur[key].(type) {
		case nil:
			next = map[string]any{}
		case map[string]any:
			next = make(map[string]any, len(x)+1)
			for k, y := range x {
				next[k] = y
			}
		default:
			return nil, fmt.Errorf("data at %s is a %T, not an object", storage.Path(path[:i+1]), x)
		}
		cur[key] = next
		cur = next
	}
	return root, nil
}

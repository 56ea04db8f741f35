package opa

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"
)

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

// ContentRevision is the revision the engine gives a policy whose manifest sets none: the
// first 12 hex digits of the SHA-256 of b's modules (sorted by path) and data.
func ContentRevision(b *bundle.Bundle) (string, error) {
	if b == nil {
		return "", errors.New("opa: no policy bundle")
	}
	return contentRevision(b)
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

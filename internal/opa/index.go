package opa

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"
)

// IndexPath is the data path of the materialised route index, data.keyauthz.routes.index, as
// a bundle data path ("keyauthz/routes/index").
const IndexPath = "keyauthz/routes/index"

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
	modules := make(map[string]*ast.Module, len(b.Modules))
	for _, m := range b.Modules {
		if m.Parsed == nil {
			return nil, fmt.Errorf("opa: module %s is not parsed", m.Path)
		}
		modules[m.Path] = m.Parsed
	}
	// The same compiler settings as compile, so that what builds here also loads.
	compiler := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithStrict(true).
		WithEnablePrintStatements(false)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("opa: compile: %w", compiler.Errors)
	}
	index, err := buildIndex(ctx, compiler, b.Data)
	if err != nil {
		return nil, fmt.Errorf("opa: %w", err)
	}
	// Plain JSON values (json.Number for numbers), as a bundle reader would produce them, so
	// that a signature computed over the copy's data matches the data.json written from it.
	if err := util.RoundTrip(&index); err != nil {
		return nil, fmt.Errorf("opa: route index: %w", err)
	}
	data, err := withValueAt(b.Data, indexPath, index)
	if err != nil {
		return nil, fmt.Errorf("opa: %w", err)
	}
	out := *b
	out.Manifest = b.Manifest.Copy()
	out.Data = data
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

package opa

import (
	"context"
	"errors"
	"fmt"
	"time"
	"weak"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// termResult makes rego hand back the result term itself instead of converting it to Go values.
func termResult(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// compile builds a complete, immutable state from b, or explains why it cannot.
func compile(ctx context.Context, b *bundle.Bundle) (*state, error) {
	if b == nil {
		return nil, errors.New("opa: no policy bundle")
	}
	if err := checkRegoVersion(b); err != nil {
		return nil, err
	}
	rev, err := revisionOf(b)
	if err != nil {
		return nil, err
	}
	compiler, data, err := compileWithIndex(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("opa: policy %s: %w", rev, err)
	}
	store := inmem.NewFromObjectWithOpts(data,
		inmem.OptRoundTripOnWrite(false),
		inmem.OptReturnASTValuesOnRead(true))

	pq, err := rego.New(
		rego.Query(DecisionQuery),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("opa: policy %s: prepare %s: %w", rev, DecisionQuery, err)
	}
	st := &state{
		revision: rev,
		query:    pq,
		static: [3]rego.EvalOption{
			rego.EvalMetrics(metrics.NoOp()),
			rego.EvalInstrument(false),
			rego.EvalGenerateJSON(termResult),
		},
	}
	st.policy = Policy{Revision: rev, st: weak.Make(st)}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := st.eval(vctx, (&Input{}).astValue()); err != nil {
		return nil, fmt.Errorf("opa: policy %s does not decide on an empty input: %w", rev, err)
	}
	return st, nil
}

// compileWithIndex compiles b's modules (Rego v1, strict, as `opa check --strict`) and returns
// the compiler and b's data with the route index materialised at data.keyauthz.routes.index:
// IndexQuery evaluated once against b's own table. b is not modified. Both the engine and the
// bundle builder (WithRouteIndex) load policies through it, so what builds also loads.
func compileWithIndex(ctx context.Context, b *bundle.Bundle) (*ast.Compiler, map[string]any, error) {
	modules := make(map[string]*ast.Module, len(b.Modules))
	for _, m := range b.Modules {
		if m.Parsed == nil {
			return nil, nil, fmt.Errorf("module %s is not parsed", m.Path)
		}
		modules[m.Path] = m.Parsed
	}
	if len(modules) == 0 {
		return nil, nil, errors.New("no Rego modules")
	}
	compiler := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithStrict(true).
		WithEnablePrintStatements(false)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, nil, fmt.Errorf("compile: %w", compiler.Errors)
	}
	index, err := buildIndex(ctx, compiler, b.Data)
	if err != nil {
		return nil, nil, err
	}
	data, err := withValueAt(b.Data, indexPath, index)
	if err != nil {
		return nil, nil, err
	}
	return compiler, data, nil
}

package opa

import (
	"context"
	"errors"
	"fmt"
	"time"
	"weak"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

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

	query, qc, err := compileDecisionQuery(compiler)
	if err != nil {
		return nil, fmt.Errorf("opa: policy %s: prepare %s: %w", rev, DecisionQuery, err)
	}
	routes, err := storage.ReadOne(ctx, store, routesPath)
	if err != nil {
		return nil, fmt.Errorf("opa: policy %s: read %v: %w", rev, routesPath, err)
	}
	routesValue, ok := routes.(ast.Value)
	if !ok {
		return nil, fmt.Errorf("opa: policy %s: %v is a %T, not a Rego value", rev, routesPath, routes)
	}
	st := &state{
		revision:      rev,
		compiler:      compiler,
		store:         store,
		query:         query,
		queryCompiler: qc,
		routesValue:   routesValue,
		callsOut:      callsOut(compiler),
	}
	st.policy = Policy{Revision: rev, st: weak.Make(st)}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := st.eval(vctx, (&Input{}).astValue(), 10*time.Second); err != nil {
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

// resultVar is the variable the compiled decision query binds the decision to.
var resultVar = ast.Var("decision")

// compileDecisionQuery compiles `decision = data.keyauthz.decision` against compiler, once per
// load, as rego.PrepareForEval would (the query compiler's default stages, not strict).
func compileDecisionQuery(compiler *ast.Compiler) (ast.Body, ast.QueryCompiler, error) {
	body, err := ast.ParseBodyWithOpts(string(resultVar)+" = "+DecisionQuery, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, nil, err
	}
	qc := compiler.QueryCompiler().WithStrict(false)
	compiled, err := qc.Compile(body)
	if err != nil {
		return nil, nil, err
	}
	return compiled, qc, nil
}

// callsOut reports whether the policy calls a non-deterministic built-in (http.send,
// net.lookup_ip_addr, ...): those may wait on the network, and read their deadline from the
// evaluation's context (see state.eval).
func callsOut(compiler *ast.Compiler) bool {
	found := false
	for _, m := range compiler.Modules {
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if found {
				return true
			}
			if !x.IsCall() {
				return false
			}
			if b, ok := ast.BuiltinMap[x.Operator().String()]; ok && b.Nondeterministic {
				found = true
			}
			return found
		})
	}
	return found
}

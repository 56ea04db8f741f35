package opa

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

const (
	// DecisionQuery is the query the engine prepares and evaluates for every request.
	DecisionQuery = "data.keyauthz.decision"
	// IndexQuery is evaluated once per load; its value is stored at data.keyauthz.routes.index.
	IndexQuery = "data.keyauthz.routing.built_index"
	// DefaultTimeout bounds one evaluation when Options.Timeout is zero.
	DefaultTimeout = 250 * time.Millisecond
)

// indexPath is where the materialised route index goes in the data (data.keyauthz.routes.index).
var indexPath = []string{"keyauthz", "routes", "index"}

// failed is the decision for every engine fault: a deny that can never become an allow.
var failed = Decision{Allow: false, Status: 500, Message: "policy evaluation failed"}

// Options configures an Engine.
type Options struct {
	// Logger receives evaluation failures and swaps; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one evaluation; zero means DefaultTimeout.
	Timeout time.Duration
}

// Engine evaluates the keyauthz policy. It is safe for concurrent use; Swap replaces the policy
// atomically while Decide calls are in flight. A nil or zero Engine denies everything with 500.
type Engine struct {
	logger  *slog.Logger
	timeout time.Duration
	state   atomic.Pointer[state]
}

// state is one compiled, immutable policy: never modified after compile returns.
type state struct {
	revision string
	query    rego.PreparedEvalQuery
	// static holds the per-evaluation options that do not depend on the request.
	static [3]rego.EvalOption
}

// New compiles b, materialises its route index, prepares the decision query and checks that
// the policy decides on an empty input. It returns an error, and no Engine, when any step fails.
func New(ctx context.Context, b *bundle.Bundle, opts Options) (*Engine, error) {
	e := &Engine{logger: opts.Logger, timeout: opts.Timeout}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	st, err := compile(ctx, b)
	if err != nil {
		return nil, err
	}
	e.state.Store(st)
	return e, nil
}

// Swap compiles b aside, exactly as New does, and then replaces the current policy in one
// atomic step. On error the current policy keeps serving and the error says why.
func (e *Engine) Swap(ctx context.Context, b *bundle.Bundle) error {
	st, err := compile(ctx, b)
	if err != nil {
		return err
	}
	old := e.state.Swap(st)
	oldRev := ""
	if old != nil {
		oldRev = old.revision
	}
	e.logger.Info("policy swapped", "old_revision", oldRev, "revision", st.revision)
	return nil
}

// Revision returns the revision of the policy in use, or "" when none is loaded.
func (e *Engine) Revision() string {
	if e == nil {
		return ""
	}
	if st := e.state.Load(); st != nil {
		return st.revision
	}
	return ""
}

// Decide evaluates the policy for in. Any failure (no policy, evaluation error, timeout,
// undefined, multiple or malformed result) is a deny with status 500, logged with its cause.
func (e *Engine) Decide(ctx context.Context, in *Input) Decision {
	d, err := e.DecideWithError(ctx, in)
	if err != nil {
		e.logFailure(ctx, in, err)
		return failed
	}
	return d
}

// DecideWithError is Decide that also returns the cause of a failure; on error the Decision is
// the 500 deny that Decide returns. It does not log.
func (e *Engine) DecideWithError(ctx context.Context, in *Input) (Decision, error) {
	if e == nil {
		return failed, errors.New("opa: no engine")
	}
	return e.decideState(ctx, e.state.Load(), in)
}

func (e *Engine) logFailure(ctx context.Context, in *Input, err error) {
	if e == nil || e.logger == nil {
		return
	}
	attrs := []slog.Attr{slog.String("revision", e.Revision()), slog.Any("err", err)}
	if in != nil {
		attrs = append(attrs,
			slog.String("method", in.Request.Method),
			slog.String("path", in.Request.Path),
			slog.String("host", in.Request.Host))
		if in.Key != nil {
			attrs = append(attrs, slog.String("key_id", in.Key.ID))
		}
	}
	e.logger.LogAttrs(ctx, slog.LevelError, "policy evaluation failed", attrs...)
}

// eval runs the prepared query once. Cancellation comes from ctx through an external
// topdown.Cancel (context.AfterFunc), which is cheaper than the goroutine rego starts otherwise.
func (st *state) eval(ctx context.Context, input ast.Value) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return failed, fmt.Errorf("opa: evaluate: %w", err)
	}
	c := topdown.NewCancel()
	stop := context.AfterFunc(ctx, c.Cancel)
	defer stop()
	opts := [...]rego.EvalOption{
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(c),
		st.static[0], st.static[1], st.static[2],
	}
	rs, err := st.query.Eval(ctx, opts[:]...)
	if err != nil {
		return failed, fmt.Errorf("opa: evaluate: %w", err)
	}
	if err := ctx.Err(); err != nil {
		// The deadline passed while evaluating: the result may be cut short.
		return failed, fmt.Errorf("opa: evaluate: %w", err)
	}
	return decisionFromResultSet(rs)
}

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

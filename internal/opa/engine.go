package opa

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
	"weak"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
)

const (
	// DecisionQuery is the query the engine prepares and evaluates for every request.
	DecisionQuery = "data.keyauthz.decision"
	// IndexQuery is evaluated once per load; its value is stored at data.keyauthz.routes.index.
	IndexQuery = "data.keyauthz.routing.built_index"
	// DefaultTimeout bounds one evaluation when Options.Timeout is zero.
	DefaultTimeout = 250 * time.Millisecond
)

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
	// policy names this load (its revision and a weak pointer to this state), made once at
	// compile time: weak.Make takes a runtime lock, so it must not run on every decision.
	policy Policy
	// compiler, store, query and queryCompiler are what topdown evaluates (eval.go).
	compiler      *ast.Compiler
	store         storage.Store
	query         ast.Body
	queryCompiler ast.QueryCompiler
	// routesValue is the data at routesRef (the route table and its index) as the store holds
	// it: each evaluation's base cache starts with it (evalcache.go).
	routesValue ast.Value
	// callsOut is set when the policy calls a built-in that may wait on the network.
	callsOut bool
}

// routesPath and routesRef name data.keyauthz.routes, the route table and its index.
var (
	routesPath = storage.Path(indexPath[:len(indexPath)-1])
	routesRef  = ast.MustParseRef("data.keyauthz.routes")
)

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

// Policy identifies one loaded policy: its revision and the load it came from. Two Policy
// values are equal only when they name the same load, so a reload of a bundle under an unchanged
// manifest revision is still a different Policy (the decision cache is keyed on it). A Policy
// does not keep its policy in memory, and it stays unequal to every later load even after its
// own policy is gone. The zero Policy is "no policy".
type Policy struct {
	Revision string
	st       weak.Pointer[state]
}

// Policy returns the policy in use now (the zero Policy when none is loaded).
func (e *Engine) Policy() Policy {
	if e == nil {
		return Policy{}
	}
	return policyOf(e.state.Load())
}

func policyOf(st *state) Policy {
	if st == nil {
		return Policy{}
	}
	return st.policy
}

// Result is the outcome of one evaluation.
type Result struct {
	// Decision is the policy's answer or, on any failure, the deny with status 500 and message
	// "policy evaluation failed" (docs/architecture.md#fail-closed).
	Decision Decision
	// Policy is the policy that was evaluated, read once, so that a concurrent Swap cannot make
	// Decision and Policy disagree; the zero Policy when none is loaded.
	Policy Policy
	// Err is the cause of a failure (no engine, no policy, nil input, evaluation error, time-out,
	// undefined, multiple or malformed result), already logged; nil when the policy decided.
	Err error
}

// Decide evaluates the policy for in, with the engine's time-out. It is the engine's one
// decision entry point: callers that only serve the answer read Result.Decision, which is a
// deny on every failure; the credential path also keys its cache on Result.Policy; the decide
// command and tests report Result.Err. Every failure is logged here, with its cause.
func (e *Engine) Decide(ctx context.Context, in *Input) Result {
	if e == nil {
		return Result{Decision: failed, Err: errors.New("opa: no engine")}
	}
	st := e.state.Load()
	d, err := e.decideState(ctx, st, in)
	if err != nil {
		e.logFailure(ctx, st, in, err)
		d = failed
	}
	return Result{Decision: d, Policy: policyOf(st), Err: err}
}

// decideState evaluates in against one compiled policy, with the engine's time-out.
func (e *Engine) decideState(ctx context.Context, st *state, in *Input) (Decision, error) {
	if st == nil {
		return failed, errors.New("opa: no policy loaded")
	}
	if in == nil {
		return failed, errors.New("opa: nil input")
	}
	timeout := e.timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return st.eval(ctx, in.astValue(), timeout)
}

func (e *Engine) logFailure(ctx context.Context, st *state, in *Input, err error) {
	if e.logger == nil {
		return
	}
	revision := ""
	if st != nil {
		revision = st.revision
	}
	attrs := []slog.Attr{slog.String("revision", revision), slog.Any("err", err)}
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

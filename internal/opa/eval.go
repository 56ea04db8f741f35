package opa

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// eval evaluates the decision query once for input, within timeout. It drives OPA's evaluator
// (topdown) directly, as rego.PreparedEvalQuery.Eval does, with the options rego would use for
// this policy (no tracing, no metrics, strict built-in errors, rule indexing, early exit), but
// with reusable caches (evalcache.go) and a time-out that needs no timer: it runs once per
// decision, so whatever it allocates, every decision pays (docs/performance.md#the-engine).
func (st *state) eval(ctx context.Context, input ast.Value, timeout time.Duration) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return failed, fmt.Errorf("opa: evaluate: %w", err)
	}
	sc := getEvalCaches(routesRef, st.routesValue)
	defer sc.put()
	sc.deadline.start(ctx, timeout)
	if st.callsOut {
		// A built-in that waits on the network reads its deadline from ctx, not from the
		// evaluator's cancellation checks.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	txn, err := st.store.NewTransaction(ctx)
	if err != nil {
		return failed, fmt.Errorf("opa: evaluate: %w", err)
	}
	defer st.store.Abort(ctx, txn)

	var result *ast.Term
	results := 0
	err = topdown.NewQuery(st.query).
		WithQueryCompiler(st.queryCompiler).
		WithCompiler(st.compiler).
		WithStore(st.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(input)).
		WithCancel(&sc.deadline).
		WithVirtualCache(&sc.virtual).
		WithBaseCache(&sc.base).
		WithMetrics(metrics.NoOp()).
		WithStrictBuiltinErrors(true).
		Iter(ctx, func(qr topdown.QueryResult) error {
			results++
			result = qr[resultVar]
			return nil
		})
	if cause := sc.deadline.err(); cause != nil {
		// Cancelled or past the deadline, while or before evaluating: the result may be cut
		// short, whether or not the evaluator noticed.
		return failed, fmt.Errorf("opa: evaluate: %w", cause)
	}
	if err != nil {
		return failed, fmt.Errorf("opa: evaluate: %w", err)
	}
	switch {
	case results == 0:
		return failed, errors.New("opa: decision is undefined")
	case results > 1:
		return failed, fmt.Errorf("opa: decision has %d results, want 1", results)
	case result == nil:
		return failed, errors.New("opa: decision is undefined")
	}
	return decisionFromValue(result.Value)
}

// deadline is the evaluator's cancellation (topdown.Cancel) for one evaluation: it reports
// cancelled once ctx is done or the time-out has passed. The evaluator asks before every
// expression; the clock is read on every 32nd question, which bounds one evaluation as a
// timer would (a step between two questions is short), without a timer, a goroutine or a
// derived context per decision.
type deadline struct {
	done      <-chan struct{}
	ctx       context.Context
	at        time.Time
	asked     atomic.Uint32
	cancelled atomic.Bool
	cause     error
}

var _ topdown.Cancel = (*deadline)(nil)

func (d *deadline) start(ctx context.Context, timeout time.Duration) {
	d.ctx, d.done, d.at = ctx, ctx.Done(), time.Now().Add(timeout)
	d.asked.Store(0)
	d.cancelled.Store(false)
	d.cause = nil
}

func (d *deadline) reset() {
	d.ctx, d.done, d.cause = nil, nil, nil
}

// Cancel cancels the evaluation.
func (d *deadline) Cancel() { d.cancelled.Store(true) }

// Cancelled reports whether the evaluation must stop.
func (d *deadline) Cancelled() bool {
	if d.cancelled.Load() {
		return true
	}
	select {
	case <-d.done: // a nil channel (a context that is never done) is never ready
		d.cancelled.Store(true)
		return true
	default:
	}
	if d.asked.Add(1)%32 == 0 && !time.Now().Before(d.at) {
		d.cancelled.Store(true)
		return true
	}
	return false
}

// err is why the evaluation must stop, nil when it need not: ctx's error, or
// context.DeadlineExceeded once the time-out has passed. It is asked once the evaluation is
// over, so it reads the clock itself.
func (d *deadline) err() error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	if !time.Now().Before(d.at) {
		return context.DeadlineExceeded
	}
	if d.cancelled.Load() {
		return context.Canceled
	}
	return nil
}

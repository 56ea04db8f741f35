package opa

import (
	"context"
	"errors"
	"weak"
)

// Policy identifies one loaded policy: its revision and the load it came from. Two Policy
// values are equal only when they name the same load, so a reload of a bundle under an unchanged
// manifest revision is still a different Policy. A Policy does not keep its policy in memory,
// and it stays unequal to every later load even after its own policy is gone. The zero Policy
// is "no policy".
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
	return Policy{Revision: st.revision, st: weak.Make(st)}
}

// DecidePolicy is Decide that also returns the policy the evaluation actually used (read once,
// so a concurrent Swap cannot make the two disagree). A failed evaluation is the 500 deny of
// Decide, logged as Decide logs it.
func (e *Engine) DecidePolicy(ctx context.Context, in *Input) (Decision, Policy) {
	if e == nil {
		return failed, Policy{}
	}
	st := e.state.Load()
	d, err := e.decideState(ctx, st, in)
	if err != nil {
		e.logFailure(ctx, in, err)
		return failed, policyOf(st)
	}
	return d, policyOf(st)
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
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return st.eval(ctx, in.astValue())
}

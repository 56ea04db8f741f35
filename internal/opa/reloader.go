package opa

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// ReloaderOptions configures a Reloader.
type ReloaderOptions struct {
	// Engine configures the Engine the Reloader builds.
	Engine Options
	// Logger receives reloads and failed loads; nil means Engine.Logger, or nothing.
	Logger *slog.Logger
	// OnLoad, when set, is called with every policy the engine starts serving (the first one
	// included), after the swap.
	OnLoad func(*bundle.Bundle)
	// Settle is how long a change must hold still before it is loaded, so that a file being
	// written in place is not loaded half-written; zero means 200 ms.
	Settle time.Duration
}

// Reloader keeps an Engine in step with a Source: Check loads the source when its content
// changed, compiles and prepares it aside and swaps it in atomically (Engine.Swap). A policy
// that cannot be read, verified, compiled or decided is not swapped in: the last good one keeps
// serving and Err reports why until a good one arrives.
type Reloader struct {
	src    Source
	engine *Engine
	logger *slog.Logger
	onLoad func(*bundle.Bundle)
	settle time.Duration

	check sync.Mutex // serialises Check
	tried string     // fingerprint of the content last loaded or tried

	mu  sync.RWMutex
	err error
}

// NewReloader loads src and builds an Engine from it. It returns an error, and no Reloader,
// when the policy cannot be loaded or does not compile and decide (see New).
func NewReloader(ctx context.Context, src Source, opts ReloaderOptions) (*Reloader, error) {
	b, fp, err := src.read()
	if err != nil {
		return nil, err
	}
	e, err := New(ctx, b, opts.Engine)
	if err != nil {
		return nil, err
	}
	r := &Reloader{src: src, engine: e, logger: opts.Logger, onLoad: opts.OnLoad, settle: opts.Settle, tried: fp}
	if r.logger == nil {
		r.logger = e.logger
	}
	if r.settle <= 0 {
		r.settle = 200 * time.Millisecond
	}
	if r.onLoad != nil {
		r.onLoad(b)
	}
	return r, nil
}

// Engine returns the engine the Reloader keeps up to date. It is the same Engine for the
// Reloader's whole life.
func (r *Reloader) Engine() *Engine { return r.engine }

// Source returns where the policy comes from.
func (r *Reloader) Source() Source { return r.src }

// Err is nil while the last load of the source succeeded, else the reason the engine still
// serves an older policy.
func (r *Reloader) Err() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.err
}

// Check looks at the source once. When its content differs from what was last loaded or tried,
// it waits for the change to settle, then loads, compiles and swaps it in. It reports whether
// the engine swapped; a non-nil error is the reason a changed source was not swapped in, and
// is also Err until a later load succeeds. An unchanged source returns false and nil.
func (r *Reloader) Check(ctx context.Context) (bool, error) {
	r.check.Lock()
	defer r.check.Unlock()
	if !r.src.Watched() {
		return false, nil
	}
	fp := r.src.fingerprint()
	if fp == r.tried {
		return false, nil
	}
	// Let a change in progress finish: load only content that held still for r.settle.
	t := time.NewTimer(r.settle)
	select {
	case <-ctx.Done():
		t.Stop()
		return false, ctx.Err()
	case <-t.C:
	}
	if again := r.src.fingerprint(); again != fp {
		return false, nil // still changing: the next Check sees it
	}
	return r.load(ctx)
}

// Reload loads the source now, changed or not, exactly as Check does for a changed source.
func (r *Reloader) Reload(ctx context.Context) (bool, error) {
	r.check.Lock()
	defer r.check.Unlock()
	return r.load(ctx)
}

func (r *Reloader) load(ctx context.Context) (bool, error) {
	b, fp, err := r.src.read()
	r.tried = fp
	if err == nil {
		err = r.engine.Swap(ctx, b)
	}
	if err != nil {
		err = fmt.Errorf("policy %s not loaded, still serving revision %s: %w", r.src, r.engine.Revision(), err)
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		r.logger.Error("policy reload failed", "source", r.src.String(), "revision", r.engine.Revision(), "err", err)
		return false, err
	}
	r.mu.Lock()
	r.err = nil
	r.mu.Unlock()
	r.logger.Info("policy reloaded", "source", r.src.String(), "revision", r.engine.Revision())
	if r.onLoad != nil {
		r.onLoad(b)
	}
	return true, nil
}

// Run calls Check every interval (one second when zero) until ctx is done. Failures are
// logged by Check and reported by Err.
func (r *Reloader) Run(ctx context.Context, interval time.Duration) {
	if !r.src.Watched() {
		return
	}
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := r.Check(ctx); errors.Is(err, context.Canceled) {
				return
			}
		}
	}
}

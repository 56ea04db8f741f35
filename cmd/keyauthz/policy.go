package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// policyPollInterval is how often a --bundle or --policy-dir source is checked for changes.
const policyPollInterval = time.Second

// policyLoader owns the engine and where its policy comes from: the built-in policy, a folder
// (--policy-dir) or a bundle (--bundle). A folder or bundle is watched: when it changes it is
// loaded, compiled and prepared aside and swapped in atomically; a broken one keeps the last
// good policy serving and makes Health report why until a good one arrives.
type policyLoader struct {
	engine   *opa.Engine
	reloader *opa.Reloader
	logger   *slog.Logger

	mu     sync.RWMutex
	scopes []string

	stop context.CancelFunc
	done chan struct{}
}

// newPolicyLoader loads the configured policy and, for a folder or a bundle, starts watching
// it. It returns an error, and no loader, when there is no good policy to start with.
func newPolicyLoader(ctx context.Context, cfg Config, logger *slog.Logger) (*policyLoader, error) {
	src, err := policySource(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p := &policyLoader{logger: logger, done: make(chan struct{})}
	r, err := opa.NewReloader(ctx, src, opa.ReloaderOptions{
		Engine: opa.Options{Logger: logger, Timeout: cfg.EvalTimeout},
		Logger: logger,
		OnLoad: p.loaded,
	})
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", src, err)
	}
	p.reloader, p.engine = r, r.Engine()
	if cfg.Bundle != "" && cfg.VerificationKey == "" {
		logger.Warn("bundle signatures are not checked: no --verification-key", "bundle", cfg.Bundle)
	}
	watchCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stop = stop
	if !src.Watched() || cfg.Check {
		close(p.done)
		return p, nil
	}
	go func() {
		defer close(p.done)
		r.Run(watchCtx, policyPollInterval)
	}()
	logger.Info("watching the policy", "source", src.String(), "revision", p.engine.Revision())
	return p, nil
}

// policySource says where cfg's policy comes from, with the bundle verification settings of
// --verification-key and --verification-alg.
func policySource(cfg Config) (opa.Source, error) {
	src := opa.Source{Bundle: cfg.Bundle, PolicyDir: cfg.PolicyDir}
	if cfg.VerificationKey != "" {
		vc, err := opa.NewVerification(cfg.VerificationKey, cfg.VerificationAlg)
		if err != nil {
			return src, err
		}
		src.Verification = vc
	}
	return src, nil
}

// loaded is called with every policy the engine starts serving.
func (p *policyLoader) loaded(b *bundle.Bundle) {
	scopes := opa.ScopeNames(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scopes = scopes
}

// Health is nil while the last policy load succeeded; else it says which source failed, why,
// and which revision still serves.
func (p *policyLoader) Health() error { return p.reloader.Err() }

// Scopes lists the scope names of the active route table.
func (p *policyLoader) Scopes() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.scopes
}

// Close stops watching the policy source and waits for a reload in progress to finish.
func (p *policyLoader) Close() {
	p.stop()
	<-p.done
}

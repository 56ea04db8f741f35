package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// policyLoader owns the engine and where its policy comes from: the built-in policy, a folder
// (--policy-dir) or a bundle (--bundle).
type policyLoader struct {
	engine *opa.Engine
	logger *slog.Logger

	mu      sync.RWMutex
	scopes  []string
	lastErr error
}

func newPolicyLoader(ctx context.Context, cfg Config, logger *slog.Logger) (*policyLoader, error) {
	b, err := loadPolicy(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	engine, err := opa.New(ctx, b, opa.Options{Logger: logger, Timeout: cfg.EvalTimeout})
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", policyName(cfg), err)
	}
	return &policyLoader{engine: engine, logger: logger, scopes: scopeNames(b)}, nil
}

func loadPolicy(cfg Config) (*bundle.Bundle, error) {
	switch {
	case cfg.Bundle != "":
		return opa.LoadBundle(cfg.Bundle)
	case cfg.PolicyDir != "":
		return opa.LoadDir(cfg.PolicyDir)
	default:
		return opa.Builtin()
	}
}

func policyName(cfg Config) string {
	switch {
	case cfg.Bundle != "":
		return "bundle " + cfg.Bundle
	case cfg.PolicyDir != "":
		return "folder " + cfg.PolicyDir
	default:
		return "built-in"
	}
}

// Health is nil while the last policy load succeeded.
func (p *policyLoader) Health() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.lastErr
}

// Scopes lists the scope names of the active route table.
func (p *policyLoader) Scopes() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.scopes
}

// Close stops watching the policy source.
func (p *policyLoader) Close() {}

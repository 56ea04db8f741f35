package opa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// Source is where a policy comes from: a bundle (a .tar.gz file or a bundle folder), a policy
// folder laid out like policies/, or, when both are "", the policy built into the binary.
type Source struct {
	Bundle    string
	PolicyDir string
	// Verification, when not nil, is what every bundle must be signed with (see
	// LoadBundleVerified); it applies to Bundle only.
	Verification *bundle.VerificationConfig
}

// String names the source in logs and errors: "bundle PATH", "folder PATH" or "built-in".
func (s Source) String() string {
	switch {
	case s.Bundle != "":
		return "bundle " + s.Bundle
	case s.PolicyDir != "":
		return "folder " + s.PolicyDir
	default:
		return "built-in"
	}
}

// Watched reports whether the source can change while keyauthz runs (a bundle or a folder).
func (s Source) Watched() bool { return s.Bundle != "" || s.PolicyDir != "" }

// Load reads the policy once.
func (s Source) Load() (*bundle.Bundle, error) {
	b, _, err := s.read()
	return b, err
}

// read loads the policy and returns the fingerprint of exactly what it loaded for a bundle
// file (the policy is read from the bytes it hashed), or of the folder as found just before
// loading it.
func (s Source) read() (*bundle.Bundle, string, error) {
	switch {
	case s.Bundle != "":
		fi, err := os.Stat(s.Bundle)
		if err != nil {
			return nil, errFingerprint(err), fmt.Errorf("opa: load bundle: %w", err)
		}
		if fi.IsDir() {
			fp, err := folderFingerprint(s.Bundle)
			if err != nil {
				return nil, errFingerprint(err), fmt.Errorf("opa: load bundle: %w", err)
			}
			b, err := LoadBundleVerified(s.Bundle, s.Verification)
			return b, fp, err
		}
		raw, err := os.ReadFile(s.Bundle)
		if err != nil {
			return nil, errFingerprint(err), fmt.Errorf("opa: load bundle: %w", err)
		}
		b, err := ReadBundle(bytes.NewReader(raw), s.Bundle, s.Verification)
		return b, bytesFingerprint(raw), err
	case s.PolicyDir != "":
		fp, err := folderFingerprint(s.PolicyDir)
		if err != nil {
			return nil, errFingerprint(err), fmt.Errorf("opa: load policy directory: %w", err)
		}
		b, err := LoadDir(s.PolicyDir)
		return b, fp, err
	default:
		b, err := Builtin()
		return b, "built-in", err
	}
}

// fingerprint identifies the source's current content without loading it.
func (s Source) fingerprint() string {
	path := s.Bundle
	if path == "" {
		path = s.PolicyDir
	}
	if path == "" {
		return "built-in"
	}
	fi, err := os.Stat(path)
	if err != nil {
		return errFingerprint(err)
	}
	if fi.IsDir() {
		fp, err := folderFingerprint(path)
		if err != nil {
			return errFingerprint(err)
		}
		return fp
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return errFingerprint(err)
	}
	return bytesFingerprint(raw)
}

func errFingerprint(err error) string { return "error: " + err.Error() }

func bytesFingerprint(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "file " + hex.EncodeToString(sum[:])
}

// folderFingerprint hashes the names, modes and contents of every file under dir.
func folderFingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %v %d\n", filepath.ToSlash(rel), d.Type(), len(raw))
		h.Write(raw)
		return nil
	})
	if err != nil {
		return "", err
	}
	return "folder " + hex.EncodeToString(h.Sum(nil)), nil
}

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

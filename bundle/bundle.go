// Package bundle builds keyauthz's policy as an OPA bundle: the Rego modules and route table of
// policies/ (or of a folder laid out like it), the manifest in bundle/.manifest, a revision and
// the route index materialised into the data, optionally signed, written as the .tar.gz that
// `keyauthz serve --bundle` and a plain `opa run --bundle` both load.
package bundle

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// manifestJSON is bundle/.manifest: the roots and Rego version of every bundle Build makes.
//
//go:embed .manifest
var manifestJSON []byte

// DefaultSigningAlg is the signing algorithm when Signing.Algorithm is empty, as for `opa build`.
const DefaultSigningAlg = "RS256"

// Options says what Build puts in a bundle.
type Options struct {
	// PolicyDir is a folder laid out like policies/ (Rego modules and data.json files); ""
	// means the policy built into the binary (policies.FS).
	PolicyDir string
	// Revision is the manifest's revision; "" means the policy's content hash, the revision
	// keyauthz reports for the same policy loaded from a folder or built in.
	Revision string
}

// Signing says how Write signs a bundle, as `opa build --signing-key` does.
type Signing struct {
	// Key is the private key: a PEM file's path or its contents (for the HS* algorithms, the
	// shared secret).
	Key string
	// Algorithm is a JWA signature algorithm, DefaultSigningAlg when "".
	Algorithm string
	// KeyID is the key id in the signature, opa.DefaultVerificationKeyID when "" (the id
	// `opa build` signs with and `opa run --verification-key` verifies with).
	KeyID string
}

// Manifest returns the manifest of bundle/.manifest, with no revision.
func Manifest() (opabundle.Manifest, error) {
	var m opabundle.Manifest
	if err := util.Unmarshal(manifestJSON, &m); err != nil {
		return m, fmt.Errorf("bundle: .manifest: %w", err)
	}
	m.Init()
	return m, nil
}

// Build loads the policy (opts.PolicyDir or the built-in one, *_test.rego left out), gives it
// the manifest of bundle/.manifest and its revision, and adds the route index that the engine
// would materialise at load to the data (data.keyauthz.routes.index), so that a standalone OPA
// serving the bundle decides as fast as keyauthz. The bundle is checked the way the engine
// checks a policy: it must compile, build its route index and decide on an empty input.
// Build returns an error, and no bundle, when any of this fails.
func Build(ctx context.Context, opts Options) (*opabundle.Bundle, error) {
	src, err := opa.Source{PolicyDir: opts.PolicyDir}.Load()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	for _, m := range src.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			return nil, fmt.Errorf("bundle: test module %s in the policy", m.Path)
		}
	}
	manifest, err := Manifest()
	if err != nil {
		return nil, err
	}
	manifest.Revision = opts.Revision
	if manifest.Revision == "" {
		if manifest.Revision, err = opa.ContentRevision(src); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	src.Manifest = manifest
	src.Signatures = opabundle.SignaturesConfig{}
	src.Modules = slices.Clone(src.Modules)
	slices.SortFunc(src.Modules, func(x, y opabundle.ModuleFile) int { return strings.Compare(x.URL, y.URL) })

	b, err := opa.WithRouteIndex(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	// The engine's own check, so that a bundle which builds is a bundle keyauthz serves.
	if _, err := opa.New(ctx, b, opa.Options{}); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return b, nil
}

// Write writes b as a .tar.gz bundle with OPA's bundle writer. When signing is not nil it
// first signs b as `opa build --signing-key` does (a .signatures.json over every file,
// setting b.Signatures); else b is written unsigned.
func Write(w io.Writer, b *opabundle.Bundle, signing *Signing) error {
	if b == nil {
		return errors.New("bundle: no bundle to write")
	}
	b.Signatures = opabundle.SignaturesConfig{}
	if signing != nil {
		if signing.Key == "" {
			return errors.New("bundle: signing needs a key")
		}
		alg := signing.Algorithm
		if alg == "" {
			alg = DefaultSigningAlg
		}
		if !keys.IsSupportedAlgorithm(alg) {
			return fmt.Errorf("bundle: signing algorithm %q is not supported", alg)
		}
		keyID := signing.KeyID
		if keyID == "" {
			keyID = opa.DefaultVerificationKeyID
		}
		if err := b.GenerateSignature(opabundle.NewSigningConfig(signing.Key, alg, ""), keyID, false); err != nil {
			return fmt.Errorf("bundle: sign: %w", err)
		}
	}
	// Into memory first, so that w never receives half a bundle.
	var buf bytes.Buffer
	if err := opabundle.NewWriter(&buf).Write(*b); err != nil {
		return fmt.Errorf("bundle: write: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("bundle: write: %w", err)
	}
	return nil
}

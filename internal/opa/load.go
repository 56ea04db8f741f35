package opa

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/keyauthz/keyauthz/policies"
)

// Builtin returns the policy embedded in the binary (policies.FS), with Rego v1 pinned and
// *_test.rego files left out. Its revision is a content hash unless a manifest sets one.
func Builtin() (*bundle.Bundle, error) {
	b, err := newLoader().WithFS(policies.FS).AsBundle(".")
	if err != nil {
		return nil, fmt.Errorf("opa: load built-in policy: %w", err)
	}
	return finish(b)
}

// LoadDir loads a policy directory laid out like policies/ (Rego files and data.json files
// whose directories give their data paths), with Rego v1 pinned and *_test.rego files left out.
func LoadDir(dir string) (*bundle.Bundle, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opa: load policy directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opa: load policy directory %s: not a directory", dir)
	}
	b, err := newLoader().AsBundle(dir)
	if err != nil {
		return nil, fmt.Errorf("opa: load policy directory %s: %w", dir, err)
	}
	return finish(b)
}

// LoadBundle loads an OPA bundle: a .tar.gz file (as built by `opa build` or `keyauthz bundle
// build`) or a bundle directory. Rego v1 is the default, *_test.rego files are left out, and a
// manifest asking for another Rego version is an error. Signatures are not checked (see
// LoadBundleVerified).
func LoadBundle(path string) (*bundle.Bundle, error) {
	return LoadBundleVerified(path, nil)
}

// LoadBundleVerified is LoadBundle that, when vc is not nil, refuses a bundle that is not
// signed by vc's key or whose files do not match its signature (OPA's bundle verification, as
// `opa run --verification-key` does it). With a nil vc no signature is required or checked,
// as with `opa run --skip-verify`.
func LoadBundleVerified(path string, vc *bundle.VerificationConfig) (*bundle.Bundle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opa: load bundle: %w", err)
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("opa: load bundle: %w", err)
		}
		defer f.Close()
		return ReadBundle(f, path, vc)
	}
	b, err := newLoader().WithBundleVerificationConfig(vc).WithSkipBundleVerification(vc == nil).AsBundle(path)
	if err != nil {
		return nil, fmt.Errorf("opa: load bundle %s: %w", path, err)
	}
	return finish(b)
}

// ReadBundle reads a .tar.gz bundle from r, as LoadBundleVerified reads a bundle file; name
// (usually the file's path) names the bundle in errors.
func ReadBundle(r io.Reader, name string, vc *bundle.VerificationConfig) (*bundle.Bundle, error) {
	b, err := newLoader().
		WithBundleVerificationConfig(vc).
		WithSkipBundleVerification(vc == nil).
		WithReader(r).
		AsBundle(name)
	if err != nil {
		return nil, fmt.Errorf("opa: load bundle %s: %w", name, err)
	}
	return finish(b)
}

// DefaultVerificationKeyID is the key id under which NewVerification registers its key; `opa
// build --signing-key` and `keyauthz bundle build --signing-key` sign with this id.
const DefaultVerificationKeyID = "default"

// NewVerification returns the bundle verification settings for the key in keyFile (a PEM
// public key, or the shared secret for the HS* algorithms) and alg (RS256 when ""), for
// LoadBundleVerified. It returns an error when the file cannot be read, the algorithm is not
// one OPA supports, or a PEM key is expected and keyFile holds none.
func NewVerification(keyFile, alg string) (*bundle.VerificationConfig, error) {
	if alg == "" {
		alg = "RS256"
	}
	if !keys.IsSupportedAlgorithm(alg) {
		return nil, fmt.Errorf("opa: verification algorithm %q is not supported", alg)
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("opa: verification key: %w", err)
	}
	if !strings.HasPrefix(alg, "HS") {
		if block, _ := pem.Decode(raw); block == nil {
			return nil, fmt.Errorf("opa: verification key %s: no PEM block (want a %s public key)", keyFile, alg)
		}
	}
	kc := &keys.Config{Key: string(raw), Algorithm: alg}
	return bundle.NewVerificationConfig(map[string]*keys.Config{DefaultVerificationKeyID: kc}, DefaultVerificationKeyID, "", nil), nil
}

func newLoader() loader.FileLoader {
	return loader.NewFileLoader().
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		WithFilter(skipTestFiles)
}

// skipTestFiles is a loader filter that leaves Rego test files out of a production load.
func skipTestFiles(_ string, info fs.FileInfo, _ int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

// finish checks the Rego version and gives b a revision when its manifest has none.
func finish(b *bundle.Bundle) (*bundle.Bundle, error) {
	if err := checkRegoVersion(b); err != nil {
		return nil, err
	}
	if b.Manifest.Revision == "" {
		rev, err := contentRevision(b)
		if err != nil {
			return nil, err
		}
		b.Manifest.Revision = rev
	}
	return b, nil
}

func checkRegoVersion(b *bundle.Bundle) error {
	if v := b.Manifest.RegoVersion; v != nil && *v != 1 {
		return fmt.Errorf("opa: bundle manifest asks for rego_version %d; keyauthz needs 1", *v)
	}
	for pattern, v := range b.Manifest.FileRegoVersions {
		if v != 1 {
			return fmt.Errorf("opa: bundle manifest asks for rego_version %d for %q; keyauthz needs 1", v, pattern)
		}
	}
	return nil
}

// ContentRevision is the revision the engine gives a policy whose manifest sets none: the
// first 12 hex digits of the SHA-256 of b's modules (sorted by path) and data.
func ContentRevision(b *bundle.Bundle) (string, error) {
	if b == nil {
		return "", errors.New("opa: no policy bundle")
	}
	return contentRevision(b)
}

// revisionOf returns the manifest's revision, or a content hash when it has none.
func revisionOf(b *bundle.Bundle) (string, error) {
	if b.Manifest.Revision != "" {
		return b.Manifest.Revision, nil
	}
	return contentRevision(b)
}

// contentRevision is the first 12 hex digits of the SHA-256 of the modules (sorted by path)
// and the data (as canonical JSON: encoding/json sorts map keys).
func contentRevision(b *bundle.Bundle) (string, error) {
	h := sha256.New()
	mods := slices.Clone(b.Modules)
	name := func(m bundle.ModuleFile) string { return cmp.Or(m.RelativePath, m.Path) }
	slices.SortFunc(mods, func(x, y bundle.ModuleFile) int { return strings.Compare(name(x), name(y)) })
	for _, m := range mods {
		raw := m.Raw
		if raw == nil && m.Parsed != nil {
			raw = []byte(m.Parsed.String())
		}
		fmt.Fprintf(h, "module %q %d\n", name(m), len(raw))
		h.Write(raw)
	}
	data, err := json.Marshal(b.Data)
	if err != nil {
		return "", errors.Join(errors.New("opa: hash bundle data"), err)
	}
	fmt.Fprintf(h, "data %d\n", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

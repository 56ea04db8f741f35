package bundle

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/testutil"

	"github.com/google/go-cmp/cmp"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/keyauthz/keyauthz/internal/opa"
)

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeBundle writes b with signing to a file in a new temporary folder and returns its path.
func writeBundle(t *testing.T, b *opabundle.Bundle, signing *Signing) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, b, signing); err != nil {
		t.Fatalf("Write: %v", err)
	}
	path := filepath.Join(t.TempDir(), "keyauthz.tar.gz")
	write(t, path, buf.Bytes())
	return path
}

// sample is an input per outcome of the built-in policy, for comparing two loads of it.
var sample = []*opa.Input{
	{Request: opa.Request{Method: "GET", Path: "/api/engine/v2", Host: "localhost", Protocol: "http"}},
	{Request: opa.Request{Method: "GET", Path: "/api/engine/v2/systems", Host: "localhost", Protocol: "http"}},
	{
		Request: opa.Request{Method: "GET", Path: "/api/engine/v2/systems/sys-1", Host: "localhost", Protocol: "http"},
		Domain:  &opa.Domain{ID: "dom-1", Name: "Local", Domain: "localhost"},
		Key:     &opa.Key{ID: "k", AuthorityID: "dom-1", Scopes: []string{"systems.read"}, Permissions: "user", Source: "header"},
		User:    &opa.User{ID: "u", AuthorityID: "dom-1", Name: "Ann", Groups: []string{}},
	},
	{
		Request: opa.Request{Method: "POST", Path: "/api/engine/v2/api_keys", Host: "localhost", Protocol: "http"},
		Domain:  &opa.Domain{ID: "dom-1", Name: "Local", Domain: "localhost"},
		Key:     &opa.Key{ID: "k", AuthorityID: "dom-1", Scopes: []string{"api_keys"}, Permissions: "support", Source: "header"},
		User:    &opa.User{ID: "u", AuthorityID: "dom-1", Name: "Ann", SysAdmin: true, Groups: []string{}},
	},
}

func TestBuildBuiltin(t *testing.T) {
	t.Parallel()
	b, err := Build(t.Context(), Options{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	builtin, err := opa.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Manifest.Revision, builtin.Manifest.Revision; got != want {
		t.Errorf("revision = %q, want the built-in policy's content hash %q", got, want)
	}
	if roots := b.Manifest.Roots; roots == nil || !slices.Equal(*roots, []string{"keyauthz"}) {
		t.Errorf("roots = %v, want [keyauthz]", roots)
	}
	if v := b.Manifest.RegoVersion; v == nil || *v != 1 {
		t.Errorf("rego_version = %v, want 1", v)
	}
	if len(b.Modules) == 0 {
		t.Fatal("no modules")
	}
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			t.Errorf("test module %s in the bundle", m.Path)
		}
	}
	routes, _ := b.Data["keyauthz"].(map[string]any)["routes"].(map[string]any)
	if routes["table"] == nil || routes["index"] == nil {
		t.Fatalf("data.keyauthz.routes has keys %v, want table and index", slices.Sorted(maps.Keys(routes)))
	}
	if _, ok := builtin.Data["keyauthz"].(map[string]any)["routes"].(map[string]any)["index"]; ok {
		t.Error("Build modified the loaded policy's data")
	}

	// Written and read back, the bundle decides as the built-in policy does.
	loaded, err := opa.LoadBundle(writeBundle(t, b, nil))
	if err != nil {
		t.Fatalf("LoadBundle: %v", err)
	}
	if diff := cmp.Diff(b.Manifest, loaded.Manifest); diff != "" {
		t.Errorf("manifest read back (-built +read):\n%s", diff)
	}
	fromBundle, err := opa.New(t.Context(), loaded, opa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fromBuiltin, err := opa.New(t.Context(), builtin, opa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fromBundle.Revision() != fromBuiltin.Revision() {
		t.Errorf("revisions differ: bundle %q, built-in %q", fromBundle.Revision(), fromBuiltin.Revision())
	}
	for _, in := range sample {
		res := fromBundle.Decide(t.Context(), in)
		if res.Err != nil {
			t.Fatalf("%s %s: %v", in.Request.Method, in.Request.Path, res.Err)
		}
		if got, want := res.Decision, fromBuiltin.Decide(t.Context(), in).Decision; got != want {
			t.Errorf("%s %s: bundle decides %+v, built-in %+v", in.Request.Method, in.Request.Path, got, want)
		}
	}
}

func TestBuildRevisionAndPolicyDir(t *testing.T) {
	t.Parallel()
	b, err := Build(t.Context(), Options{Revision: "2026-11-25.1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Revision != "2026-11-25.1" {
		t.Errorf("revision = %q, want the given one", b.Manifest.Revision)
	}

	// A policy folder: a test module there is left out, and a different route table gives a
	// different content hash.
	dir := copyPolicy(t)
	write(t, filepath.Join(dir, "keyauthz", "extra_test.rego"), []byte("package keyauthz_test\n\ntest_x if true\n"))
	table := filepath.Join(dir, "keyauthz", "routes", "data.json")
	raw, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	write(t, table, bytes.Replace(raw, []byte(`"/api/engine/v2/version"`), []byte(`"/api/engine/v2/release"`), 1))
	fromDir, err := Build(t.Context(), Options{PolicyDir: dir})
	if err != nil {
		t.Fatalf("Build(policy dir): %v", err)
	}
	for _, m := range fromDir.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			t.Errorf("test module %s in the bundle", m.Path)
		}
	}
	builtin, err := Build(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fromDir.Manifest.Revision == builtin.Manifest.Revision {
		t.Errorf("changed route table kept the revision %q", fromDir.Manifest.Revision)
	}
}

// copyPolicy copies the built-in policy folder (../policies) into a temporary folder.
func copyPolicy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "policies")
	err := os.CopyFS(dst, os.DirFS(src))
	if err != nil {
		t.Fatal(err)
	}
	// Only the policy tree: the Go file and README are not part of it.
	for _, name := range []string{"embed.go", "README.md"} {
		_ = os.Remove(filepath.Join(dst, name))
	}
	return dst
}

func TestBuildRefusesBrokenPolicies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file, content string
	}{
		{"syntax error", "keyauthz/decision.rego", "package keyauthz\n\ndecision := {\n"},
		{"unsafe variable", "keyauthz/decision.rego", "package keyauthz\n\ndecision := x if { y := 1 }\n"},
		{"duplicate routes", "keyauthz/routes/data.json", `{"table": [
			{"methods": ["GET"], "path": "/a", "scopes": ["a"], "access": "read", "gate": "none"},
			{"methods": ["GET"], "path": "/a", "scopes": ["b"], "access": "read", "gate": "none"}]}`},
		{"no decision", "keyauthz/decision.rego", "package keyauthz\n\nx := 1\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyPolicy(t)
			write(t, filepath.Join(dir, filepath.FromSlash(tc.file)), []byte(tc.content))
			if b, err := Build(t.Context(), Options{PolicyDir: dir}); err == nil {
				t.Errorf("Build succeeded with revision %s", b.Manifest.Revision)
			}
		})
	}
}

func TestWriteSigned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private, public := testutil.WriteRSAKeyPair(t, dir, "signer")
	_, otherPublic := testutil.WriteRSAKeyPair(t, dir, "other")
	b, err := Build(t.Context(), Options{Revision: "signed-1"})
	if err != nil {
		t.Fatal(err)
	}
	signed := writeBundle(t, b, &Signing{Key: private})
	if len(b.Signatures.Signatures) != 1 {
		t.Fatalf("signatures = %v, want one", b.Signatures)
	}
	unsigned := writeBundle(t, b, nil)
	if len(b.Signatures.Signatures) != 0 {
		t.Fatalf("Write(unsigned) left the signatures %v", b.Signatures)
	}

	verify := func(key string) *opabundle.VerificationConfig {
		vc, err := opa.NewVerification(key, "RS256")
		if err != nil {
			t.Fatal(err)
		}
		return vc
	}
	got, err := opa.LoadBundleVerified(signed, verify(public))
	if err != nil {
		t.Fatalf("signed bundle, right key: %v", err)
	}
	if got.Manifest.Revision != "signed-1" {
		t.Errorf("revision = %q", got.Manifest.Revision)
	}
	if _, err := opa.New(t.Context(), got, opa.Options{}); err != nil {
		t.Errorf("signed bundle does not load into the engine: %v", err)
	}
	if _, err := opa.LoadBundleVerified(signed, verify(otherPublic)); err == nil {
		t.Error("signed bundle, wrong key: loaded")
	}
	if _, err := opa.LoadBundleVerified(unsigned, verify(public)); err == nil || !strings.Contains(err.Error(), ".signatures.json") {
		t.Errorf("unsigned bundle with a verification key: err = %v, want a missing .signatures.json", err)
	}
	// Without a verification key, a signed bundle loads (signatures unchecked).
	if _, err := opa.LoadBundle(signed); err != nil {
		t.Errorf("signed bundle, no verification key: %v", err)
	}

	// Tampering with a signed file breaks the signature.
	tampered := *b
	tampered.Manifest = b.Manifest.Copy()
	if err := Write(&bytes.Buffer{}, &tampered, &Signing{Key: private}); err != nil {
		t.Fatal(err)
	}
	tampered.Manifest.Revision = "tampered"
	var buf bytes.Buffer
	if err := opabundle.NewWriter(&buf).Write(tampered); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tampered.tar.gz")
	write(t, path, buf.Bytes())
	if _, err := opa.LoadBundleVerified(path, verify(public)); err == nil {
		t.Error("tampered bundle: loaded")
	}

	if err := Write(&bytes.Buffer{}, b, &Signing{Key: private, Algorithm: "XX999"}); err == nil {
		t.Error("unknown signing algorithm: no error")
	}
	if err := Write(&bytes.Buffer{}, b, &Signing{Key: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("missing signing key: no error")
	}
}

func TestManifest(t *testing.T) {
	t.Parallel()
	m, err := Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != "" || m.Roots == nil || !slices.Equal(*m.Roots, []string{"keyauthz"}) || m.RegoVersion == nil || *m.RegoVersion != 1 {
		t.Errorf("bundle/.manifest = %+v, want roots [keyauthz], rego_version 1, no revision", m)
	}
}

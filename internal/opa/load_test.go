package opa

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
)

func TestBuiltin(t *testing.T) {
	t.Parallel()
	b, err := Builtin()
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	for _, m := range b.Modules {
		if filepath.Ext(m.Path) != ".rego" || bytes.HasSuffix([]byte(m.Path), []byte("_test.rego")) {
			t.Errorf("unexpected module %s", m.Path)
		}
	}
	if b.Manifest.Revision == "" {
		t.Error("built-in policy has no revision")
	}
	e, err := New(t.Context(), b, Options{})
	if err != nil {
		t.Fatalf("New(builtin): %v", err)
	}
	got := e.Decide(t.Context(), &Input{Request: request("GET", "/no/such/path")}).Decision
	if got.Allow || got.Status != 401 {
		t.Errorf("no key, unknown path: got %+v, want a 401 deny", got)
	}
}

func TestLoadBundle(t *testing.T) {
	t.Parallel()
	a := loadTestPolicy(t, "a")
	a.Manifest.Revision = "rev-42"
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(*a); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, filepath.Join("testdata", "policies", "a")} {
		b, err := LoadBundle(path)
		if err != nil {
			t.Fatalf("LoadBundle(%s): %v", path, err)
		}
		e, err := New(t.Context(), b, Options{})
		if err != nil {
			t.Fatalf("New(%s): %v", path, err)
		}
		got := e.Decide(t.Context(), &Input{Request: request("GET", "/systems"), Key: keyWith("systems")}).Decision
		if !got.Allow {
			t.Errorf("%s: got %+v, want an allow", path, got)
		}
		if path == file && e.Revision() != "rev-42" {
			t.Errorf("%s: Revision() = %q, want the manifest's rev-42", path, e.Revision())
		}
	}
	if _, err := LoadBundle(filepath.Join(t.TempDir(), "missing.tar.gz")); err == nil {
		t.Error("LoadBundle(missing) succeeded")
	}
	if _, err := LoadDir(file); err == nil {
		t.Error("LoadDir(file) succeeded")
	}
}

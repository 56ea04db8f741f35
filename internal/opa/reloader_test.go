package opa

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// bundleBytes returns test policy name as a .tar.gz bundle with the given revision, signed
// with the PEM private key in signingKey when it is not "".
func bundleBytes(t *testing.T, name, revision, signingKey string) []byte {
	t.Helper()
	b := loadTestPolicy(t, name)
	b.Manifest.Revision = revision
	if signingKey != "" {
		if err := b.GenerateSignature(bundle.NewSigningConfig(signingKey, "RS256", ""), DefaultVerificationKeyID, false); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(*b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// replaceFile writes data to path through a temporary file and a rename, as `mv` does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newTestReloader(t *testing.T, src Source) *Reloader {
	t.Helper()
	r, err := NewReloader(t.Context(), src, ReloaderOptions{Engine: Options{Timeout: time.Minute}, Settle: time.Millisecond})
	if err != nil {
		t.Fatalf("NewReloader(%s): %v", src, err)
	}
	return r
}

// check runs r.Check and fails the test unless it swapped (want true) or refused (want false).
func check(t *testing.T, r *Reloader, wantSwap bool) error {
	t.Helper()
	swapped, err := r.Check(t.Context())
	if swapped != wantSwap {
		t.Fatalf("Check() swapped = %v (err %v), want %v", swapped, err, wantSwap)
	}
	return err
}

func TestReloaderBundleFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keyauthz.tar.gz")
	replaceFile(t, path, bundleBytes(t, "a", "a-1", ""))
	var loaded []string
	var mu sync.Mutex
	r, err := NewReloader(t.Context(), Source{Bundle: path}, ReloaderOptions{
		Settle: time.Millisecond,
		OnLoad: func(b *bundle.Bundle) {
			mu.Lock()
			defer mu.Unlock()
			loaded = append(loaded, b.Manifest.Revision)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := r.Engine()
	in := &Input{Request: request("GET", "/systems"), Key: keyWith("zones")}
	decideA := e.Decide(t.Context(), in).Decision
	if e.Revision() != "a-1" || r.Err() != nil || decideA.Allow {
		t.Fatalf("start: revision %q, Err %v, decision %+v", e.Revision(), r.Err(), decideA)
	}
	if err := check(t, r, false); err != nil {
		t.Fatalf("unchanged bundle: %v", err)
	}

	replaceFile(t, path, bundleBytes(t, "b", "b-1", ""))
	check(t, r, true)
	decideB := e.Decide(t.Context(), in).Decision
	if e.Revision() != "b-1" || r.Err() != nil || !decideB.Allow {
		t.Fatalf("after b: revision %q, Err %v, decision %+v", e.Revision(), r.Err(), decideB)
	}

	broken := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("not a bundle"), "bundle read failed"},
		{"truncated", bundleBytes(t, "a", "a-2", "")[:100], "bundle read failed"},
		{"does not compile", mustBundle(t, map[string]string{
			"/keyauthz/decision.rego": "package keyauthz\n\ndecision := x if { y := 1 }\n",
		}), "compile"},
		{"does not decide", mustBundle(t, map[string]string{
			"/keyauthz/decision.rego": "package keyauthz\n\ndecision := 1\n",
			"/keyauthz/routing.rego":  goodRouting,
		}), "does not decide"},
	}
	for _, tc := range broken {
		replaceFile(t, path, tc.data)
		err := check(t, r, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "still serving revision b-1") {
			t.Errorf("%s: err = %v, want %q and the serving revision", tc.name, err, tc.want)
		}
		if r.Err() == nil || r.Err().Error() != err.Error() {
			t.Errorf("%s: Err() = %v, want the load's error", tc.name, r.Err())
		}
		if got := e.Decide(t.Context(), in).Decision; got != decideB || e.Revision() != "b-1" {
			t.Errorf("%s: revision %q decides %+v, want b-1's %+v", tc.name, e.Revision(), got, decideB)
		}
		// The same broken content is not tried again, and stays reported.
		if err := check(t, r, false); err != nil || r.Err() == nil {
			t.Errorf("%s: second Check: err %v, Err %v; want nil and still unhealthy", tc.name, err, r.Err())
		}
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := check(t, r, false); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("removed bundle: err = %v", err)
	}

	replaceFile(t, path, bundleBytes(t, "a", "a-3", ""))
	check(t, r, true)
	if e.Revision() != "a-3" || r.Err() != nil || e.Decide(t.Context(), in).Decision != decideA {
		t.Errorf("good bundle back: revision %q, Err %v", e.Revision(), r.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(loaded, ","); got != "a-1,b-1,a-3" {
		t.Errorf("OnLoad saw %s, want a-1,b-1,a-3", got)
	}
}

// mustBundle writes files (bundle path: Rego) as a .tar.gz bundle, without compiling them.
func mustBundle(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bundle.Bundle
	b.Data = map[string]any{"keyauthz": map[string]any{"routes": map[string]any{"table": []any{}}}}
	for path, src := range files {
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: path, Path: path, Raw: []byte(src)})
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReloaderVerification(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "key.pem")
	public := filepath.Join(dir, "key.pub.pem")
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	vc, err := NewVerification(public, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keyauthz.tar.gz")

	replaceFile(t, path, bundleBytes(t, "a", "a-1", ""))
	if _, err := NewReloader(t.Context(), Source{Bundle: path, Verification: vc}, ReloaderOptions{}); err == nil || !strings.Contains(err.Error(), ".signatures.json") {
		t.Fatalf("unsigned bundle at start: err = %v, want a refusal naming .signatures.json", err)
	}

	replaceFile(t, path, bundleBytes(t, "a", "a-1", private))
	r := newTestReloader(t, Source{Bundle: path, Verification: vc})
	replaceFile(t, path, bundleBytes(t, "b", "b-1", ""))
	if err := check(t, r, false); err == nil || !strings.Contains(err.Error(), ".signatures.json") {
		t.Errorf("unsigned bundle: err = %v", err)
	}
	// Signed by a key other than the verification key.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, bundleBytes(t, "b", "b-2", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}))))
	if err := check(t, r, false); err == nil || !strings.Contains(err.Error(), "verify") {
		t.Errorf("bundle signed by another key: err = %v", err)
	}
	if r.Engine().Revision() != "a-1" {
		t.Errorf("revision = %q after refused bundles, want a-1", r.Engine().Revision())
	}
	replaceFile(t, path, bundleBytes(t, "b", "b-3", private))
	check(t, r, true)
	if r.Engine().Revision() != "b-3" || r.Err() != nil {
		t.Errorf("signed bundle: revision %q, Err %v", r.Engine().Revision(), r.Err())
	}

	for _, tc := range []struct{ key, alg string }{
		{filepath.Join(dir, "missing.pem"), "RS256"},
		{public, "XX256"},
		{filepath.Join(dir, "keyauthz.tar.gz"), "RS256"}, // not PEM
	} {
		if _, err := NewVerification(tc.key, tc.alg); err == nil {
			t.Errorf("NewVerification(%s, %s) succeeded", tc.key, tc.alg)
		}
	}
}

func TestReloaderFolders(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"policy-dir", "bundle-dir"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "policies", "a"))); err != nil {
				t.Fatal(err)
			}
			src := Source{PolicyDir: dir}
			if kind == "bundle-dir" {
				src = Source{Bundle: dir}
			}
			r := newTestReloader(t, src)
			revA := r.Engine().Revision()
			check(t, r, false)

			decision := filepath.Join(dir, "keyauthz", "decision.rego")
			good, err := os.ReadFile(decision)
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, decision, []byte("package keyauthz\n\ndecision := {\n"))
			if err := check(t, r, false); err == nil || r.Err() == nil {
				t.Fatalf("broken folder: err %v, Err %v", err, r.Err())
			}
			if r.Engine().Revision() != revA {
				t.Errorf("revision %q after a broken folder, want %q", r.Engine().Revision(), revA)
			}
			b, err := os.ReadFile(filepath.Join("testdata", "policies", "b", "keyauthz", "decision.rego"))
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, decision, b)
			check(t, r, true)
			if r.Err() != nil || r.Engine().Revision() == revA {
				t.Errorf("policy b: Err %v, revision %q", r.Err(), r.Engine().Revision())
			}
			replaceFile(t, decision, good)
			check(t, r, true)
			if r.Engine().Revision() != revA {
				t.Errorf("policy a back: revision %q, want %q", r.Engine().Revision(), revA)
			}
		})
	}
}

func TestReloaderBuiltinIsNotWatched(t *testing.T) {
	t.Parallel()
	r := newTestReloader(t, Source{})
	if r.Source().Watched() {
		t.Error("the built-in policy is watched")
	}
	check(t, r, false)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r.Run(ctx, time.Millisecond) // returns at once
}

// TestReloaderSwapRace decides from 8 goroutines while the bundle file is replaced 50 times,
// alternating two policies, each picked up by Check: every decision must be exactly one of the
// two policies' answers.
func TestReloaderSwapRace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keyauthz.tar.gz")
	files := [2][]byte{bundleBytes(t, "a", "a", ""), bundleBytes(t, "b", "b", "")}
	replaceFile(t, path, files[0])
	r := newTestReloader(t, Source{Bundle: path})
	e := r.Engine()
	decideWhileSwapping(t, e, 50, func(n int) {
		replaceFile(t, path, files[(n+1)%2])
		if swapped, err := r.Check(t.Context()); !swapped || err != nil {
			t.Errorf("swap %d: swapped %v, err %v", n, swapped, err)
		}
		if want := [2]string{"a", "b"}[(n+1)%2]; e.Revision() != want {
			t.Errorf("swap %d: revision %q, want %q", n, e.Revision(), want)
		}
	})
}

// TestReloaderRun checks the polling loop picks a change up without a Check from the test.
func TestReloaderRun(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keyauthz.tar.gz")
	replaceFile(t, path, bundleBytes(t, "a", "a", ""))
	r := newTestReloader(t, Source{Bundle: path})
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		r.Run(ctx, 10*time.Millisecond)
	}()
	defer func() { cancel(); <-stopped }()
	replaceFile(t, path, bundleBytes(t, "b", "b", ""))
	deadline := time.Now().Add(20 * time.Second)
	for r.Engine().Revision() != "b" {
		if time.Now().After(deadline) {
			t.Fatalf("revision still %q after 20s; Err %v", r.Engine().Revision(), r.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

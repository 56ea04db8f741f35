package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// End-to-end tests of `keyauthz bundle build` and of serving a bundle or policy folder that
// changes under a running server.

// buildBundleFile runs `keyauthz bundle build -o out --revision rev extra...` in-process.
func buildBundleFile(t *testing.T, out, rev string, extra ...string) {
	t.Helper()
	var stdout, stderr testutil.SyncBuffer
	args := append([]string{"bundle", "build", "-o", out, "--revision", rev}, extra...)
	if err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("keyauthz %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
}

// policyCopy copies ../../policies into a new folder and, when gate is not "", sets the gate of
// GET /api/engine/v2/systems to it. It returns the folder.
func policyCopy(t *testing.T, gate string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "policies"))); err != nil {
		t.Fatal(err)
	}
	if gate != "" {
		setSystemsGate(t, dir, gate)
	}
	return dir
}

// setSystemsGate rewrites dir's route table with the gate of GET /api/engine/v2/systems.
func setSystemsGate(t *testing.T, dir, gate string) {
	t.Helper()
	file := filepath.Join(dir, "keyauthz", "routes", "data.json")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Table []map[string]any `json:"table"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range data.Table {
		if r["path"] == "/api/engine/v2/systems" && fmt.Sprint(r["methods"]) == "[GET]" {
			r["gate"], found = gate, true
		}
	}
	if !found {
		t.Fatal("no GET /api/engine/v2/systems in the route table")
	}
	if raw, err = json.Marshal(data); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, file, raw)
}

// replaceFile writes data to path through a temporary file and a rename, as `mv` does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// brokenBundle returns the bundle at path with decision.rego replaced by src (which must parse:
// the bundle then reads, and fails to compile or to decide).
func brokenBundle(t *testing.T, path, src string) []byte {
	t.Helper()
	b, err := opa.LoadBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.Revision = "broken"
	for i, m := range b.Modules {
		if strings.HasSuffix(m.Path, "decision.rego") {
			b.Modules[i].Raw = []byte(src)
		}
	}
	var buf bytes.Buffer
	if err := opabundle.NewWriter(&buf).Write(*b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// healthState is GET /health.
type healthState struct {
	code     int
	Status   string `json:"status"`
	Revision string `json:"revision"`
	Error    string `json:"error"`
}

func (ts *testServer) health(t *testing.T) healthState {
	t.Helper()
	r := ts.must(t, call{method: "GET", path: "/health"})
	h := decode[healthState](t, r.body)
	h.code = r.status
	return h
}

// waitHealth polls /health for up to 20 s until ok says it is what the test waits for.
func (ts *testServer) waitHealth(t *testing.T, what string, ok func(healthState) bool) healthState {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := ts.health(t)
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s; /health is %d %+v", what, h.code, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (ts *testServer) waitRevision(t *testing.T, rev string) {
	t.Helper()
	ts.waitHealth(t, "healthy revision "+rev, func(h healthState) bool {
		return h.code == http.StatusOK && h.Status == "ok" && h.Revision == rev
	})
}

// waitUnhealthy waits up to 20 s for a 503 naming reason, and checks rev still serves.
func (ts *testServer) waitUnhealthy(t *testing.T, rev, reason string) {
	t.Helper()
	h := ts.waitHealth(t, "an unhealthy policy ("+reason+")", func(h healthState) bool {
		return h.code == http.StatusServiceUnavailable && strings.Contains(h.Error, reason)
	})
	if h.Status != "unhealthy" || h.Revision != rev || !strings.Contains(h.Error, "still serving revision "+rev) {
		t.Errorf("/health = %+v, want unhealthy, revision %s, an error naming %q", h, rev, reason)
	}
}

func (ts *testServer) metricsText(t *testing.T) string {
	t.Helper()
	return string(ts.must(t, call{method: "GET", path: "/metrics"}).body)
}

func TestBundleBuildCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "keyauthz.tar.gz")
	var stdout, stderr testutil.SyncBuffer
	if err := run(t.Context(), []string{"bundle", "build", "-o", out}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("bundle build: %v\n%s", err, stderr.String())
	}
	builtin, err := opa.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	if want := "wrote " + out + ": revision " + builtin.Manifest.Revision; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	b, err := opa.LoadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Revision != builtin.Manifest.Revision || b.Manifest.Roots == nil || !slices.Equal(*b.Manifest.Roots, []string{"keyauthz"}) {
		t.Errorf("manifest = %+v", b.Manifest)
	}
	if _, ok := dig(b.Data, "keyauthz", "routes", "index").(map[string]any); !ok {
		t.Error("no route index at data.keyauthz.routes.index")
	}
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			t.Errorf("test module %s in the bundle", m.Path)
		}
	}

	// Signed, then verified the way serve verifies.
	private, public := testutil.WriteRSAKeyPair(t, dir, "signer")
	signed := filepath.Join(dir, "signed.tar.gz")
	buildBundleFile(t, signed, "s1", "--signing-key", private, "--signing-alg", "RS256")
	vc, err := opa.NewVerification(public, "RS256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opa.LoadBundleVerified(signed, vc); err != nil {
		t.Errorf("signed bundle does not verify: %v", err)
	}
	if _, err := opa.LoadBundleVerified(out, vc); err == nil {
		t.Error("unsigned bundle verified")
	}

	for _, args := range [][]string{
		{"bundle"},
		{"bundle", "make"},
		{"bundle", "build", "extra"},
		{"bundle", "build", "-o", filepath.Join(dir, "missing", "b.tar.gz")},
		{"bundle", "build", "-o", filepath.Join(dir, "x.tar.gz"), "--policy-dir", filepath.Join(dir, "missing")},
		{"bundle", "build", "-o", filepath.Join(dir, "x.tar.gz"), "--signing-key", filepath.Join(dir, "missing.pem")},
		{"bundle", "build", "-o", filepath.Join(dir, "x.tar.gz"), "--signing-key", private, "--signing-alg", "XX1"},
	} {
		if err := run(t.Context(), args, func(string) string { return "" }, &testutil.SyncBuffer{}, &testutil.SyncBuffer{}); err == nil {
			t.Errorf("keyauthz %q succeeded", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar.gz")); err == nil {
		t.Error("a failed build left its output file")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestServeBundleReload serves a bundle, rebuilds it with a changed route, replaces it with
// broken ones and brings a good one back, checking decisions, /health, /metrics and the
// decision log at each step.
func TestServeBundleReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keyauthz.tar.gz")
	buildBundleFile(t, path, "r1")
	decisionLog := filepath.Join(dir, "decisions.log")
	ts := startServer(t, "", "--eval-timeout", "10s", "--bundle", path, "--decision-log", decisionLog)
	w := attachWorld(t, ts)
	userID := w.createUser(t, "Plain User", false)
	key := *w.createKey(t, map[string]any{"name": "reader", "user_id": userID, "scopes": []string{"systems.read"}}).XAPIKey

	ts.waitRevision(t, "r1")
	if d := ts.decide(t, "GET", "/api/engine/v2/systems", key); !d.Allow {
		t.Fatalf("r1: GET systems with systems.read: %+v, want an allow", d)
	}
	if m := ts.metricsText(t); !strings.Contains(m, `keyauthz_policy_info{revision="r1"} 1`) {
		t.Errorf("/metrics has no policy info for r1")
	}

	// Rebuild with GET /api/engine/v2/systems gated to admin: the plain user's key is refused.
	gated := policyCopy(t, "admin")
	buildBundleFile(t, path, "r2", "--policy-dir", gated)
	ts.waitRevision(t, "r2")
	denied := ts.decide(t, "GET", "/api/engine/v2/systems", key)
	if denied.Allow || denied.Status != 403 || denied.Message != "requires admin permissions" {
		t.Fatalf("r2: GET systems with a plain user's key: %+v, want 403 requires admin permissions", denied)
	}

	for _, bad := range []struct {
		name, reason string
		data         []byte
	}{
		{"garbage", "bundle read failed", []byte("this is not a bundle")},
		{"truncated", "bundle read failed", func() []byte {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return raw[:len(raw)/2]
		}()},
		{"does not compile", "decision.rego:3", brokenBundle(t, path, "package keyauthz\n\ndecision := x if { y := 1 }\n")},
		{"does not decide", "does not decide", brokenBundle(t, path, "package keyauthz\n\ndecision := \"yes\"\n")},
	} {
		replaceFile(t, path, bad.data)
		ts.waitUnhealthy(t, "r2", bad.reason)
		if d := ts.decide(t, "GET", "/api/engine/v2/systems", key); d != denied {
			t.Errorf("%s: the last good policy no longer serves: %+v, want %+v", bad.name, d, denied)
		}
	}
	if !strings.Contains(ts.Stderr.String(), `"msg":"policy reload failed"`) {
		t.Error("no log line for the failed reloads")
	}
	if m := ts.metricsText(t); !strings.Contains(m, `keyauthz_policy_info{revision="r2"} 1`) {
		t.Errorf("/metrics has no policy info for r2")
	}

	buildBundleFile(t, path, "r3")
	ts.waitRevision(t, "r3")
	if d := ts.decide(t, "GET", "/api/engine/v2/systems", key); !d.Allow {
		t.Errorf("r3: GET systems: %+v, want an allow again", d)
	}
	if m := ts.metricsText(t); !strings.Contains(m, `keyauthz_policy_info{revision="r3"} 1`) || strings.Contains(m, `revision="r2"`) {
		t.Errorf("/metrics policy info is not r3 alone")
	}

	ts.Stop(t)
	raw, err := os.ReadFile(decisionLog)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for line := range strings.Lines(string(raw)) {
		var rec struct{ Revision string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		seen[rec.Revision] = true
	}
	for _, rev := range []string{"r1", "r2", "r3"} {
		if !seen[rev] {
			t.Errorf("no decision-log line with revision %s (seen %v)", rev, seen)
		}
	}
}

// TestServeBundleVerification: with --verification-key, an unsigned bundle or one signed by
// another key is refused at start-up and on reload.
func TestServeBundleVerification(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private, public := testutil.WriteRSAKeyPair(t, dir, "signer")
	other, _ := testutil.WriteRSAKeyPair(t, dir, "other")
	path := filepath.Join(dir, "keyauthz.tar.gz")

	buildBundleFile(t, path, "unsigned")
	err := run(t.Context(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--bundle", path, "--verification-key", public},
		func(string) string { return "" }, &testutil.SyncBuffer{}, &testutil.SyncBuffer{})
	if err == nil || !strings.Contains(err.Error(), ".signatures.json") {
		t.Fatalf("start with an unsigned bundle: err = %v, want a refusal naming .signatures.json", err)
	}

	buildBundleFile(t, path, "s1", "--signing-key", private)
	ts := startServer(t, "", "--eval-timeout", "10s", "--bundle", path, "--verification-key", public, "--verification-alg", "RS256")
	ts.waitRevision(t, "s1")

	buildBundleFile(t, path, "unsigned-2")
	ts.waitUnhealthy(t, "s1", ".signatures.json")
	buildBundleFile(t, path, "other-key", "--signing-key", other)
	ts.waitUnhealthy(t, "s1", "verify")
	buildBundleFile(t, path, "s2", "--signing-key", private)
	ts.waitRevision(t, "s2")
}

// TestServePolicyDirReload: --policy-dir is watched like a bundle.
func TestServePolicyDirReload(t *testing.T) {
	t.Parallel()
	dir := policyCopy(t, "")
	ts := startServer(t, "", "--eval-timeout", "10s", "--policy-dir", dir)
	w := attachWorld(t, ts)
	userID := w.createUser(t, "Plain User", false)
	key := *w.createKey(t, map[string]any{"name": "reader", "user_id": userID, "scopes": []string{"systems.read"}}).XAPIKey
	first := ts.health(t).Revision
	if d := ts.decide(t, "GET", "/api/engine/v2/systems", key); !d.Allow {
		t.Fatalf("GET systems: %+v, want an allow", d)
	}

	setSystemsGate(t, dir, "support")
	h := ts.waitHealth(t, "a new revision", func(h healthState) bool { return h.code == http.StatusOK && h.Revision != first })
	if d := ts.decide(t, "GET", "/api/engine/v2/systems", key); d.Allow || d.Message != "requires support permissions" {
		t.Errorf("after the change: %+v, want 403 requires support permissions", d)
	}

	replaceFile(t, filepath.Join(dir, "keyauthz", "decision.rego"), []byte("package keyauthz\n\ndecision := {\n"))
	ts.waitUnhealthy(t, h.Revision, "rego_parse_error")
}

// TestServeRefusesBrokenPolicyAtStart: with no good policy there is nothing to serve, and serve
// says why instead of starting.
func TestServeRefusesBrokenPolicyAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.tar.gz")
	if err := os.WriteFile(garbage, []byte("not a bundle"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.tar.gz")
	buildBundleFile(t, good, "good")
	broken := filepath.Join(dir, "broken.tar.gz")
	if err := os.WriteFile(broken, brokenBundle(t, good, "package keyauthz\n\ndecision := x if { y := 1 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"garbage", []string{"--bundle", garbage}, []string{"policy bundle " + garbage, "bundle read failed"}},
		{"does not compile", []string{"--bundle", broken}, []string{"policy bundle " + broken, "compile", "decision.rego:3"}},
		{"missing", []string{"--bundle", filepath.Join(dir, "missing.tar.gz")}, []string{"no such file"}},
		{"missing verification key", []string{"--bundle", good, "--verification-key", filepath.Join(dir, "missing.pem")}, []string{"verification key", "no such file"}},
		{"bad verification algorithm", []string{"--bundle", good, "--verification-key", good, "--verification-alg", "XX1"}, []string{`--verification-alg "XX1"`}},
		{"broken policy folder", []string{"--policy-dir", filepath.Join(dir, "missing")}, []string{"folder", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir}, tc.args...)
			var stdout testutil.SyncBuffer
			err := run(t.Context(), args, func(string) string { return "" }, &stdout, &testutil.SyncBuffer{})
			if err == nil {
				t.Fatalf("serve started; stdout %s", stdout.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(stdout.String(), "listening") {
				t.Error("serve listened")
			}
		})
	}
}

// TestServeBundleSwapUnderLoad decides over HTTP from several goroutines while the bundle file
// is replaced back and forth between two policies: every answer must be exactly one of the two
// policies' answers, and no request may fail.
func TestServeBundleSwapUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keyauthz.tar.gz")
	open, gated := filepath.Join(dir, "open.tar.gz"), filepath.Join(dir, "gated.tar.gz")
	buildBundleFile(t, open, "open")
	buildBundleFile(t, gated, "gated", "--policy-dir", policyCopy(t, "admin"))
	files := map[string][]byte{}
	for rev, p := range map[string]string{"open": open, "gated": gated} {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[rev] = raw
	}
	replaceFile(t, path, files["open"])
	ts := startServer(t, "", "--eval-timeout", "10s", "--bundle", path)
	w := attachWorld(t, ts)
	userID := w.createUser(t, "Plain User", false)
	key := *w.createKey(t, map[string]any{"name": "reader", "user_id": userID, "scopes": []string{"systems.read"}}).XAPIKey
	allowed := ts.decide(t, "GET", "/api/engine/v2/systems", key)
	if !allowed.Allow {
		t.Fatalf("open policy: %+v", allowed)
	}
	deniedMsg := "requires admin permissions"

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				input := map[string]any{"method": "GET", "path": "/api/engine/v2/systems", "host": "localhost", "headers": map[string]string{"x-api-key": key}}
				r, err := ts.send(t.Context(), call{method: "POST", path: "/v1/data/keyauthz/decision", body: map[string]any{"input": input}})
				if err != nil || r.status != http.StatusOK {
					errs <- fmt.Errorf("decision request: status %d, err %v, body %s", r.status, err, r.body)
					return
				}
				var out struct{ Result decisionResult }
				if err := json.Unmarshal(r.body, &out); err != nil {
					errs <- err
					return
				}
				d := out.Result
				isAllowed := d == allowed
				isDenied := !d.Allow && d.Status == 403 && d.Message == deniedMsg && d.KeyID == allowed.KeyID
				if !isAllowed && !isDenied {
					errs <- fmt.Errorf("decision %+v is neither policy's", d)
					return
				}
			}
		})
	}
	for i := range 6 {
		rev := []string{"gated", "open"}[i%2]
		replaceFile(t, path, files[rev])
		ts.waitRevision(t, rev)
		d := ts.decide(t, "GET", "/api/engine/v2/systems", key)
		if (rev == "open") != d.Allow {
			t.Errorf("revision %s decides %+v", rev, d)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// dig walks nested JSON objects along path.
func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

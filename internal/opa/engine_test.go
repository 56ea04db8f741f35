package opa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/bundle"
)

func loadTestPolicy(t testing.TB, name string) *bundle.Bundle {
	t.Helper()
	b, err := LoadDir(filepath.Join("testdata", "policies", name))
	if err != nil {
		t.Fatalf("LoadDir(%s): %v", name, err)
	}
	return b
}

func newTestEngine(t testing.TB, name string, opts Options) *Engine {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute // tests are about answers, not about a loaded machine's speed
	}
	e, err := New(context.Background(), loadTestPolicy(t, name), opts)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return e
}

// writePolicy writes files (path: content) under a temporary directory and loads it.
func writePolicy(t *testing.T, files map[string]string) *bundle.Bundle {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	return b
}

func request(method, path string) Request {
	return Request{Method: method, Path: path, Host: "localhost", Protocol: "http", Query: map[string][]string{}}
}

func keyWith(scopes ...string) *Key {
	return &Key{ID: "0123456789abcdef0123456789abcdef", AuthorityID: "dom-1", Scopes: scopes, Permissions: "admin", Source: "header"}
}

var (
	systemsRoute = Route{Resource: "systems", Access: "read", Gate: "none"}
	denied500    = Decision{Status: 500, Message: "policy evaluation failed"}
)

func TestDecide(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t, "a", Options{})
	tests := []struct {
		note string
		in   Input
		want Decision
	}{
		{
			note: "scope grants the route",
			in:   Input{Request: request("GET", "/systems"), Key: keyWith("zones", "systems")},
			want: Decision{Allow: true, Status: 200, Message: "a: allowed", Route: systemsRoute, Permissions: "admin"},
		},
		{
			note: "missing scope",
			in:   Input{Request: request("GET", "/systems"), Key: keyWith("zones")},
			want: Decision{Status: 403, Message: "a: missing scope", Route: systemsRoute, Permissions: "admin"},
		},
		{
			note: "nil scopes",
			in:   Input{Request: request("GET", "/systems"), Key: keyWith()},
			want: Decision{Status: 403, Message: "a: missing scope", Route: systemsRoute, Permissions: "admin"},
		},
		{
			note: "no key",
			in:   Input{Request: request("GET", "/systems")},
			want: Decision{Status: 401, Message: "missing credentials", Permissions: "user"},
		},
		{
			note: "stale index entry is gone",
			in:   Input{Request: request("GET", "stale"), Key: keyWith("systems")},
			want: Decision{Status: 401, Message: "missing credentials", Permissions: "user"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			res := e.Decide(t.Context(), &tc.in)
			if res.Err != nil {
				t.Fatalf("Decide: %v", res.Err)
			}
			if diff := cmp.Diff(tc.want, res.Decision); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if res.Policy != e.Policy() || res.Policy.Revision != e.Revision() {
				t.Errorf("Decide named policy %q, want the one in use, %q", res.Policy.Revision, e.Revision())
			}
		})
	}
}

func TestDecideFailsClosed(t *testing.T) {
	t.Parallel()
	var logs testutil.SyncBuffer
	// A time-out generous enough for a loaded machine, and a short one only for /slow: a
	// 50 ms bound on every case turned the allow into a 500 under -race on a busy machine.
	e := newTestEngine(t, "faulty", Options{Logger: slogTo(&logs), Timeout: time.Minute})
	short := newTestEngine(t, "faulty", Options{Logger: slogTo(&logs), Timeout: 50 * time.Millisecond})
	allowed := Decision{Allow: true, Status: 200, Message: "faulty: allowed", Route: Route{Resource: "r", Access: "read", Gate: "none"}, Permissions: "user"}
	tests := []struct {
		path string
		want Decision
	}{
		{"/allow", allowed},
		{"/other", Decision{Status: 401, Message: "faulty: default", Permissions: "user"}},
		{"/undefined", denied500},
		{"/wrong-allow", denied500},
		{"/wrong-status", denied500},
		{"/odd-status", denied500},
		{"/allow-403", denied500},
		{"/wrong-route", denied500},
		{"/wrong-message", denied500},
		{"/no-permissions", denied500},
		{"/not-object", denied500},
		{"/fraction", denied500},
		{"/builtin-error", denied500},
		{"/conflict", denied500},
		{"/slow", denied500},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			in := &Input{Request: request("GET", tc.path), Key: keyWith("r")}
			e := e
			if tc.path == "/slow" {
				e = short
			}
			res := e.Decide(t.Context(), in)
			if diff := cmp.Diff(tc.want, res.Decision); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if (res.Err != nil) != (tc.want.Status == 500) {
				t.Errorf("Decide error = %v, want an error iff status 500", res.Err)
			}
			if res.Policy != e.Policy() {
				t.Errorf("Decide named policy %q, want the one evaluated, %q", res.Policy.Revision, e.Revision())
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		in := &Input{Request: request("GET", "/allow"), Key: keyWith("r")}
		res := e.Decide(ctx, in)
		got, err := res.Decision, res.Err
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
		if diff := cmp.Diff(denied500, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Cleanup(func() {
		// Failures are logged with their cause and the key id.
		out := logs.String()
		for _, want := range []string{`"msg":"policy evaluation failed"`, `"key_id":"0123456789abcdef0123456789abcdef"`, `"path":"/conflict"`, "eval_conflict_error"} {
			if !bytes.Contains([]byte(out), []byte(want)) {
				t.Errorf("log lacks %s:\n%s", want, out)
			}
		}
	})
}

func TestDecideWithoutPolicy(t *testing.T) {
	t.Parallel()
	in := &Input{Request: request("GET", "/systems"), Key: keyWith("systems")}
	var nilEngine *Engine
	for name, e := range map[string]*Engine{"nil": nilEngine, "zero": {}} {
		res := e.Decide(t.Context(), in)
		if diff := cmp.Diff(denied500, res.Decision); diff != "" {
			t.Errorf("%s engine (-want +got):\n%s", name, diff)
		}
		if res.Err == nil || res.Policy != (Policy{}) {
			t.Errorf("%s engine: error %v, policy %+v; want an error and no policy", name, res.Err, res.Policy)
		}
		if got := e.Revision(); got != "" {
			t.Errorf("%s engine Revision() = %q, want \"\"", name, got)
		}
	}
	e := newTestEngine(t, "a", Options{})
	res := e.Decide(t.Context(), nil)
	if diff := cmp.Diff(denied500, res.Decision); diff != "" {
		t.Errorf("nil input (-want +got):\n%s", diff)
	}
	if res.Err == nil {
		t.Error("nil input: no error")
	}
}

const goodRouting = `package keyauthz.routing

built_index := {r.path: r | some r in data.keyauthz.routes.table}
`

const goodDecision = `package keyauthz

default decision := {"allow": false, "status": 401, "message": "", "route": {}, "permissions": "user"}
`

const goodData = `{"table": [{"path": "/x"}]}`

func TestNewRejectsBrokenPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note    string
		files   map[string]string
		wantErr string
	}{
		{
			note: "compile error",
			files: map[string]string{
				"keyauthz/routing.rego":     goodRouting,
				"keyauthz/decision.rego":    "package keyauthz\n\ndecision := x if { y := 1 }\n",
				"keyauthz/routes/data.json": goodData,
			},
			wantErr: "compile",
		},
		{
			note: "unused variable (strict)",
			files: map[string]string{
				"keyauthz/routing.rego":     goodRouting,
				"keyauthz/decision.rego":    goodDecision + "\nx if {\n\ty := 1\n\tinput.a\n}\n",
				"keyauthz/routes/data.json": goodData,
			},
			wantErr: "compile",
		},
		{
			note: "no built_index",
			files: map[string]string{
				"keyauthz/routing.rego":     "package keyauthz.routing\n\nother := 1\n",
				"keyauthz/decision.rego":    goodDecision,
				"keyauthz/routes/data.json": goodData,
			},
			wantErr: "built_index is undefined",
		},
		{
			note: "conflicting routes",
			files: map[string]string{
				"keyauthz/routing.rego":     goodRouting,
				"keyauthz/decision.rego":    goodDecision,
				"keyauthz/routes/data.json": `{"table": [{"path": "/x", "a": 1}, {"path": "/x", "a": 2}]}`,
			},
			wantErr: "build route index",
		},
		{
			note: "decision undefined on empty input",
			files: map[string]string{
				"keyauthz/routing.rego":     goodRouting,
				"keyauthz/decision.rego":    "package keyauthz\n\ndecision := {} if input.request.method == \"GET\"\n",
				"keyauthz/routes/data.json": goodData,
			},
			wantErr: "does not decide on an empty input",
		},
		{
			note: "malformed decision",
			files: map[string]string{
				"keyauthz/routing.rego":     goodRouting,
				"keyauthz/decision.rego":    "package keyauthz\n\ndecision := true\n",
				"keyauthz/routes/data.json": goodData,
			},
			wantErr: "does not decide on an empty input",
		},
		{
			note: "route data is not an object",
			files: map[string]string{
				"keyauthz/routing.rego":  goodRouting,
				"keyauthz/decision.rego": goodDecision,
				"keyauthz/data.json":     `{"routes": {"table": []}}`,
				"data.json":              `{}`,
			},
			wantErr: "",
		},
		{
			note:    "no modules",
			files:   map[string]string{"keyauthz/routes/data.json": goodData},
			wantErr: "no Rego modules",
		},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			_, err := New(t.Context(), writePolicy(t, tc.files), Options{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := New(t.Context(), nil, Options{}); err == nil {
		t.Error("New(nil bundle) succeeded")
	}
}

func TestSwap(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t, "a", Options{})
	in := &Input{Request: request("GET", "/systems"), Key: keyWith("zones")}
	revA := e.Revision()
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(revA) {
		t.Fatalf("Revision() = %q, want 12 hex digits", revA)
	}
	if got := e.Decide(t.Context(), in).Decision; got.Allow {
		t.Fatalf("policy a allowed: %+v", got)
	}

	if err := e.Swap(t.Context(), loadTestPolicy(t, "b")); err != nil {
		t.Fatalf("Swap(b): %v", err)
	}
	revB := e.Revision()
	if revB == revA {
		t.Errorf("revision did not change on swap: %q", revB)
	}
	want := Decision{Allow: true, Status: 200, Message: "b: allowed", Route: systemsRoute, Permissions: "admin"}
	if diff := cmp.Diff(want, e.Decide(t.Context(), in).Decision); diff != "" {
		t.Errorf("after swap (-want +got):\n%s", diff)
	}

	broken := writePolicy(t, map[string]string{
		"keyauthz/routing.rego":  goodRouting,
		"keyauthz/decision.rego": "package keyauthz\n\ndecision := x if { y := 1 }\n",
	})
	if err := e.Swap(t.Context(), broken); err == nil {
		t.Fatal("Swap(broken) succeeded")
	}
	if got := e.Revision(); got != revB {
		t.Errorf("revision after a failed swap = %q, want %q", got, revB)
	}
	if diff := cmp.Diff(want, e.Decide(t.Context(), in).Decision); diff != "" {
		t.Errorf("after a failed swap (-want +got):\n%s", diff)
	}
}

// TestSwapRace decides from 8 goroutines while another swaps between two policies: every
// decision must be exactly one of the two policies' answers.
func TestSwapRace(t *testing.T) {
	t.Parallel()
	a, b := loadTestPolicy(t, "a"), loadTestPolicy(t, "b")
	// A generous timeout: 9 busy goroutines on a small machine (and -race) can stall one
	// evaluation for longer than the default, and this test is about atomicity, not timeouts.
	e, err := New(t.Context(), a, Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	decideWhileSwapping(t, e, 50, func(n int) {
		next := a
		if n%2 == 0 {
			next = b
		}
		if err := e.Swap(t.Context(), next); err != nil {
			t.Errorf("Swap %d: %v", n, err)
		}
	})
}

// decideWhileSwapping decides with 8 goroutines on e, which serves test policy "a", while swap
// is called swaps times (swap n must leave policy "b" in place for even n, "a" for odd n), and
// fails the test if any decision is neither policy a's nor policy b's answer: a half-loaded
// policy would give some third answer, or a 500.
func decideWhileSwapping(t *testing.T, e *Engine, swaps int, swap func(n int)) {
	t.Helper()
	inputs := []*Input{
		{Request: request("GET", "/systems"), Key: keyWith("systems")},
		{Request: request("GET", "/systems"), Key: keyWith("zones")},
		{Request: request("POST", "/api_keys"), Key: keyWith("api_keys")},
		{Request: request("GET", "/systems")},
	}
	eb, err := New(t.Context(), loadTestPolicy(t, "b"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	answers := make([][2]Decision, len(inputs))
	for i, in := range inputs {
		answers[i] = [2]Decision{e.Decide(t.Context(), in).Decision, eb.Decide(t.Context(), in).Decision}
		if answers[i][0] == answers[i][1] {
			t.Fatalf("input %d: policies a and b agree; the test would prove nothing", i)
		}
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				i := (g + n) % len(inputs)
				res := e.Decide(t.Context(), inputs[i])
				got, err := res.Decision, res.Err
				if got != answers[i][0] && got != answers[i][1] {
					errs <- fmt.Errorf("input %d: decision %+v is neither policy's (error: %v)", i, got, err)
					return
				}
			}
		})
	}
	for n := range swaps {
		swap(n)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

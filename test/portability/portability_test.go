// Package portability checks the promise of docs/policy-contract.md#portability that the bundle
// keyauthz builds decides the same in keyauthz's embedded engine, in `opa eval` and in
// `opa run --server`: every case of testdata/portability is decided three ways, and each answer
// must equal the case's expected decision exactly.
package portability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/bundle"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// corpus is the folder of decision cases: JSON files, each a list of cases.
const corpus = "../../testdata/portability"

// testCase is one decision case: a note naming the rule it exercises, a policy input
// (docs/policy-contract.md#input) and the expected data.keyauthz.decision.
type testCase struct {
	Note  string          `json:"note"`
	Input json.RawMessage `json:"input"`
	Want  json.RawMessage `json:"want"`
	file  string
}

func loadCases(t *testing.T) []testCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpus, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all []testCase
	seen := map[string]string{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var cases []testCase
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cases); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, c := range cases {
			c.file = filepath.Base(file)
			if c.Note == "" || len(c.Input) == 0 || len(c.Want) == 0 {
				t.Fatalf("%s: case %q lacks a note, an input or a want", file, c.Note)
			}
			if prev, dup := seen[c.Note]; dup {
				t.Fatalf("%s: note %q is also in %s", file, c.Note, prev)
			}
			seen[c.Note] = c.file
			all = append(all, c)
		}
	}
	if len(all) < 60 {
		t.Fatalf("%d cases in %s, want at least 60", len(all), corpus)
	}
	return all
}

// policyInput decodes a case's input strictly into the typed input Go builds, and returns it
// with its JSON encoding: exactly what the engine evaluates (Input.astValue is that encoding).
func policyInput(t *testing.T, raw json.RawMessage) (*opa.Input, []byte) {
	t.Helper()
	var in opa.Input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("input: %v", err)
	}
	if p := in.Request.Path; p != "" && opa.NormalizePath(p) != p {
		t.Fatalf("input path %q is not normalised (%q)", p, opa.NormalizePath(p))
	}
	canonical, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	return &in, canonical
}

// generic decodes JSON into plain values, so that answers from any source compare exactly.
func generic(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

// buildBundle builds the built-in policy with keyauthz's builder into dir and returns its path.
func buildBundle(t *testing.T, dir string, signing *bundle.Signing) string {
	t.Helper()
	b, err := bundle.Build(t.Context(), bundle.Options{Revision: "portability"})
	if err != nil {
		t.Fatalf("bundle.Build: %v", err)
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b, signing); err != nil {
		t.Fatalf("bundle.Write: %v", err)
	}
	path := filepath.Join(dir, "keyauthz.tar.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPortability(t *testing.T) {
	cases := loadCases(t)
	opaBin := opaBinary(t)
	path := buildBundle(t, t.TempDir(), nil)

	// (a) the embedded engine, on the bundle as written.
	loaded, err := opa.LoadBundle(path)
	if err != nil {
		t.Fatalf("LoadBundle: %v", err)
	}
	// A generous budget: parallel opa processes share this machine, and this test is about
	// answers, not latency.
	engine, err := opa.New(t.Context(), loaded, opa.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("opa.New: %v", err)
	}
	// (c) a standalone OPA server on the same bundle.
	server := startOPA(t, opaBin, path)

	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".json")+"/"+c.Note, func(t *testing.T) {
			t.Parallel()
			in, canonical := policyInput(t, c.Input)
			want := generic(t, c.Want)

			res := engine.Decide(t.Context(), in)
			if res.Err != nil {
				t.Fatalf("engine: %v", res.Err)
			}
			raw, err := json.Marshal(res.Decision)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, generic(t, raw)); diff != "" {
				t.Errorf("embedded engine (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, opaEval(t, opaBin, path, canonical)); diff != "" {
				t.Errorf("opa eval (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, server.decide(t, canonical)); diff != "" {
				t.Errorf("opa run --server (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPortabilitySignedBundle checks that OPA verifies the signature keyauthz's builder writes,
// with the key id and algorithm defaults of `opa build --signing-key`, and rejects it under
// another key.
func TestPortabilitySignedBundle(t *testing.T) {
	opaBin := opaBinary(t)
	dir := t.TempDir()
	private, public := testutil.WriteRSAKeyPair(t, dir, "signer")
	_, otherPublic := testutil.WriteRSAKeyPair(t, dir, "other")
	path := buildBundle(t, dir, &bundle.Signing{Key: private})
	// opa eval has no verification flags; opa run verifies a bundle before it serves it.
	srv := startOPA(t, opaBin, path, "--verification-key", public)
	in := []byte(`{"request": {"method": "GET", "path": "/api/engine/v2", "host": "h", "protocol": "http", "query": {}}}`)
	if got := srv.decide(t, in).(map[string]any)["message"]; got != "anonymous route" {
		t.Errorf("opa run with the signer's key decides %v, want the anonymous route", got)
	}
	out, err := exec.CommandContext(t.Context(), opaBin, "run", "--server", "--addr", "127.0.0.1:0",
		"--bundle", path, "--verification-key", otherPublic, "--skip-version-check", "--disable-telemetry").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "verif") {
		t.Errorf("opa run with another key: err %v, want a verification failure; output:\n%s", err, out)
	}
}

// opaEval runs `opa eval --bundle path data.keyauthz.decision` on input and returns the value.
func opaEval(t *testing.T, opaBin, path string, input []byte) any {
	t.Helper()
	file := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(file, input, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), opaBin, "eval", "--bundle", path, "--format", "json",
		"--strict-builtin-errors", "--input", file, opa.DecisionQuery)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("opa eval: %v\n%s%s", err, out, stderr.String())
	}
	var rs struct {
		Result []struct {
			Expressions []struct {
				Value json.RawMessage `json:"value"`
			} `json:"expressions"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("opa eval output: %v\n%s", err, out)
	}
	if len(rs.Result) != 1 || len(rs.Result[0].Expressions) != 1 {
		t.Fatalf("opa eval: want one result with one expression, got\n%s", out)
	}
	return generic(t, rs.Result[0].Expressions[0].Value)
}

// opaServer is `opa run --server` on a loopback port.
type opaServer struct{ url string }

// startOPA runs `opa run --server [extra...] --bundle path` on a free loopback port, waits until its
// /health answers 200 (polling up to 20 s, twice as long on a retry with a new port) and stops
// it at cleanup.
func startOPA(t *testing.T, opaBin, path string, extra ...string) *opaServer {
	t.Helper()
	var lastErr error
	for attempt := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		args := append([]string{"run", "--server", "--addr", addr, "--log-level", "error",
			"--skip-version-check", "--disable-telemetry"}, extra...)
		cmd := exec.Command(opaBin, append(args, "--bundle", path)...)
		var stderr testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		srv := &opaServer{url: "http://" + addr}
		if err := srv.waitHealthy(exited, time.Duration(attempt+1)*20*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			lastErr = fmt.Errorf("%w\n%s", err, stderr.String())
			continue
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return srv
	}
	t.Fatalf("opa run --server did not start: %v", lastErr)
	return nil
}

func (s *opaServer) waitHealthy(exited <-chan error, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("opa exited: %v", err)
		default:
		}
		resp, err := http.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no healthy /health within %s", within)
}

// decide asks the server's Data API for data.keyauthz.decision with input.
func (s *opaServer) decide(t *testing.T, input []byte) any {
	t.Helper()
	body := append(append([]byte(`{"input": `), input...), '}')
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/v1/data/keyauthz/decision", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("opa server: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("opa server: status %d, decode error %v", resp.StatusCode, err)
	}
	if len(out.Result) == 0 {
		t.Fatal("opa server: decision is undefined")
	}
	return generic(t, out.Result)
}

// opaBin is the opa binary the tests run: $OPA_BIN (a path, or a name looked up in PATH) when
// set, else the version pinned in go.mod (`tool github.com/open-policy-agent/opa`), built once
// with `go build` so that each case does not pay `go tool`'s start-up.
var (
	opaOnce   sync.Once
	opaPath   string
	opaErr    error
	opaTmpDir string
)

func opaBinary(t *testing.T) string {
	t.Helper()
	opaOnce.Do(func() {
		if bin := os.Getenv("OPA_BIN"); bin != "" {
			opaPath, opaErr = exec.LookPath(bin)
			return
		}
		opaTmpDir, opaErr = os.MkdirTemp("", "keyauthz-opa-")
		if opaErr != nil {
			return
		}
		opaPath = filepath.Join(opaTmpDir, "opa")
		cmd := exec.Command("go", "build", "-o", opaPath, "github.com/open-policy-agent/opa")
		if out, err := cmd.CombinedOutput(); err != nil {
			opaErr = fmt.Errorf("go build opa: %w\n%s", err, out)
		}
	})
	if opaErr != nil {
		t.Fatal(opaErr)
	}
	return opaPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if opaTmpDir != "" {
		_ = os.RemoveAll(opaTmpDir)
	}
	os.Exit(code)
}

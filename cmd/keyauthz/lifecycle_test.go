package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// End-to-end tests of the service's life: restarts on the same folder, crashes, signals, a
// second server on a busy folder, and the configuration (flags, environment, --check).

// proc is keyauthz running as a separate process, started from the built binary.
type proc struct {
	*testServer // URL only: send and must work on it
	cmd         *exec.Cmd
	exited      chan error
}

// startProcess builds keyauthz (once) and runs `keyauthz serve --addr 127.0.0.1:0 --data-dir
// dataDir extra...`, reading the "listening on" line from its stdout. The process is killed at
// test cleanup if it still runs.
func startProcess(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	pr, pw := io.Pipe()
	ts := &testServer{DataDir: dataDir, Stderr: &testutil.SyncBuffer{}, Stdout: &testutil.SyncBuffer{}}
	// --eval-timeout: see newWorld.
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--eval-timeout", "10s"}, extra...)...)
	cmd.Stdout = io.MultiWriter(pw, ts.Stdout)
	cmd.Stderr = ts.Stderr
	cmd.Env = []string{} // no KEYAUTHZ_* from the test's environment
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{testServer: ts, cmd: cmd, exited: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		pw.CloseWithError(io.EOF)
		p.exited <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	ts.URL = waitListening(t, pr, ts.Stderr)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if key, err := os.ReadFile(filepath.Join(dataDir, "bootstrap.key")); err == nil {
		ts.AdminKey = strings.TrimSpace(string(key))
	}
	return p
}

// wait waits for the process to exit and returns its exit code (-1 when killed by a signal).
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("wait: %v", err)
		}
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("keyauthz did not exit within 30s; stderr:\n%s", p.Stderr)
		return 0
	}
}

// TestRestartKeepsKeys stops the server as SIGTERM does (context cancel) and starts it again on
// the same folder: every key works as before, deleted ones stay deleted, and the bootstrap does
// not run twice.
func TestRestartKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, dir)
	if !strings.Contains(w.Stderr.String(), "bootstrapped") {
		t.Fatalf("first start did not bootstrap; stderr:\n%s", w.Stderr)
	}
	userID := w.createUser(t, "Restart User", true)
	plain := map[string]string{}
	for i, body := range []map[string]any{
		bookingPanel(userID, "panel"),
		{"name": "admin tool", "user_id": userID, "scopes": []string{"api_keys"}, "permissions": "admin"},
		{"name": "expires next year", "user_id": userID, "scopes": []string{"zones.read"}, "expires_at": time.Now().AddDate(1, 0, 0).Unix()},
		{"name": "deleted before restart", "user_id": userID, "scopes": []string{"zones"}},
	} {
		k := w.createKey(t, body)
		plain[k.ID] = *k.XAPIKey
		if i == 3 {
			w.admin(t, "DELETE", "/api/engine/v2/api_keys/"+k.ID, nil, http.StatusAccepted)
		}
	}
	keysBefore := w.listKeys(t)
	usersBefore := w.admin(t, "GET", "/api/engine/v2/users", nil, http.StatusOK).body
	keyFile, err := os.ReadFile(filepath.Join(dir, "bootstrap.key"))
	if err != nil {
		t.Fatal(err)
	}
	w.Stop(t)
	if !strings.Contains(w.Stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line on shutdown; stderr:\n%s", w.Stderr)
	}

	w2 := newWorld(t, dir)
	if strings.Contains(w2.Stderr.String(), "bootstrapped") {
		t.Errorf("the bootstrap ran again on restart; stderr:\n%s", w2.Stderr)
	}
	if keyFile2, _ := os.ReadFile(filepath.Join(dir, "bootstrap.key")); string(keyFile2) != string(keyFile) {
		t.Errorf("bootstrap.key was rewritten on restart")
	}
	if w2.domainID != w.domainID {
		t.Errorf("domain id %s after restart, want %s", w2.domainID, w.domainID)
	}
	if r := w2.admin(t, "GET", "/api/engine/v2/domains", nil, http.StatusOK); r.header.Get("X-Total-Count") != "1" {
		t.Errorf("domains after restart: %s", r.body)
	}
	if usersAfter := w2.admin(t, "GET", "/api/engine/v2/users", nil, http.StatusOK).body; string(usersAfter) != string(usersBefore) {
		t.Errorf("users changed across the restart:\nbefore %s\nafter  %s", usersBefore, usersAfter)
	}
	// last_used_at moves by design: the admin key's uses were written at shutdown.
	keysAfter := w2.listKeys(t)
	if diff := cmp.Diff(keysBefore, keysAfter, cmpopts.IgnoreFields(keyRecord{}, "LastUsedAt")); diff != "" {
		t.Errorf("keys changed across the restart (-before +after):\n%s", diff)
	}
	i := slices.IndexFunc(keysAfter, func(k keyRecord) bool { return k.Name == "bootstrap" })
	if i < 0 {
		t.Fatal("no bootstrap key in the listing")
	}
	if k := keysAfter[i]; k.LastUsedAt == nil || *k.LastUsedAt < k.CreatedAt {
		t.Errorf("the bootstrap key was used before the restart, but its last_used_at is %v", k.LastUsedAt)
	}
	for id, key := range plain {
		r := w2.must(t, call{method: "GET", path: inspectRoute, key: key})
		wantStatus := http.StatusOK
		if !slices.ContainsFunc(keysBefore, func(k keyRecord) bool { return k.ID == id }) {
			wantStatus = http.StatusUnauthorized
		}
		if r.status != wantStatus {
			t.Errorf("key %s after restart: %d %s, want %d", id, r.status, r.body, wantStatus)
		}
	}
	for _, k := range keysBefore {
		if k.Name != "admin tool" {
			continue
		}
		if r := w2.must(t, call{method: "GET", path: "/api/engine/v2/api_keys", key: plain[k.ID]}); r.status != http.StatusOK {
			t.Errorf("admin tool key after restart, GET /api_keys: %d %s", r.status, r.body)
		}
	}
}

// TestKillDashNineKeepsAcknowledgedKey kills the process with SIGKILL right after a create's
// 201: with SyncWrites the key is on disk, and works after a restart.
func TestKillDashNineKeepsAcknowledgedKey(t *testing.T) {
	dir := t.TempDir()
	p := startProcess(t, dir)
	w := attachWorld(t, p.testServer)
	users := decode[[]struct{ ID, Name string }](t, w.admin(t, "GET", "/api/engine/v2/users", nil, http.StatusOK).body)
	if len(users) != 1 {
		t.Fatalf("users after bootstrap: %+v", users)
	}
	var created []keyRecord
	for i := range 3 {
		created = append(created, w.createKey(t, map[string]any{
			"name": fmt.Sprintf("crash test %d", i), "user_id": users[0].ID, "scopes": []string{"zones.read"},
		}))
	}
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL, right after the last 201
		t.Fatal(err)
	}
	if code := p.wait(t); code != -1 {
		t.Errorf("exit code %d after SIGKILL, want -1 (killed)", code)
	}

	p2 := startProcess(t, dir)
	for _, k := range created {
		r := p2.must(t, call{method: "GET", path: inspectRoute, key: *k.XAPIKey})
		if r.status != http.StatusOK || decode[struct{ ID string }](t, r.body).ID != k.ID {
			t.Errorf("key %q after kill -9 and restart: %d %s", k.Name, r.status, r.body)
		}
	}
	if strings.Contains(p2.Stderr.String(), "bootstrapped") {
		t.Errorf("bootstrap ran again after the crash")
	}

	// SIGTERM: a clean stop, exit code 0, "stopped" logged, and the folder is free again.
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p2.Stderr)
	}
	if !strings.Contains(p2.Stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line after SIGTERM; stderr:\n%s", p2.Stderr)
	}
	w3 := newWorld(t, dir)
	if r := w3.must(t, call{method: "GET", path: inspectRoute, key: *created[0].XAPIKey}); r.status != http.StatusOK {
		t.Errorf("key after SIGTERM and restart: %d %s", r.status, r.body)
	}
}

// TestSecondServerOnBusyFolder: a second keyauthz on a folder in use fails at once, saying so.
func TestSecondServerOnBusyFolder(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)

	t.Run("in-process", func(t *testing.T) {
		var stdout, stderr testutil.SyncBuffer
		err := run(t.Context(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir}, func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), dir) {
			t.Errorf("second run: %v, want an error saying %s is in use", err, dir)
		}
		if strings.Contains(stdout.String(), "listening") {
			t.Errorf("the second server listened: %s", stdout.String())
		}
	})
	t.Run("separate process", func(t *testing.T) {
		bin, err := buildBinary()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir)
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("second process: %v, want exit code 1; output:\n%s", err, out)
		}
		if want := "data folder " + dir + " is in use"; !strings.Contains(string(out), want) {
			t.Errorf("output %q, want it to contain %q", out, want)
		}
	})
}

// TestServeCheck: --check validates the configuration and the policy and exits 0 without
// touching the data folder.
func TestServeCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-created")
	var stdout, stderr testutil.SyncBuffer
	if err := run(t.Context(), []string{"serve", "--check", "--data-dir", dir}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("serve --check: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "are valid") {
		t.Errorf("stdout %q, want a line saying the configuration is valid", stdout.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--check created the data folder (stat: %v)", err)
	}

	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "serve", "--check", "--data-dir", dir, "--policy-dir", "../../policies")
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "are valid") {
		t.Errorf("keyauthz serve --check --policy-dir ../../policies: %v\n%s", err, out)
	}
}

// TestServeConfigErrors: a bad configuration reports every problem at once and fails.
func TestServeConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"policy-dir with bundle, and a bad addr",
			[]string{"--policy-dir", "p", "--bundle", "b.tar.gz", "--addr", "nonsense"},
			nil, []string{"--policy-dir and --bundle are exclusive", `--addr "nonsense"`}},
		{"six problems at once",
			[]string{"--addr", ":x:y", "--log-level", "loud", "--shutdown-timeout", "0s", "--eval-timeout", "-1s", "--bootstrap-domain", "not a host", "--verification-key", "k.pem"},
			nil, []string{`--addr ":x:y"`, `--log-level "loud"`, "--shutdown-timeout must be positive", "--eval-timeout must be positive", `--bootstrap-domain "not a host"`, "--verification-key needs --bundle"}},
		{"empty data dir", []string{"--data-dir", ""}, nil, []string{"--data-dir must not be empty"}},
		{"stray argument", []string{"--check", "extra"}, nil, []string{`unexpected arguments ["extra"]`}},
		{"bad environment", nil,
			map[string]string{"KEYAUTHZ_ADDR": "nonsense", "KEYAUTHZ_SHUTDOWN_TIMEOUT": "soon", "KEYAUTHZ_LOG_LEVEL": "loud"},
			[]string{`KEYAUTHZ_SHUTDOWN_TIMEOUT="soon"`, `--addr "nonsense"`, `--log-level "loud"`}},
		{"unknown flag", []string{"--nope"}, nil, []string{"flag provided but not defined: -nope"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr testutil.SyncBuffer
			args := append([]string{"serve", "--check"}, tc.args...)
			err := run(t.Context(), args, func(k string) string { return tc.env[k] }, &stdout, &stderr)
			if err == nil {
				t.Fatalf("run %q: no error", args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	t.Run("binary exit code", func(t *testing.T) {
		bin, err := buildBinary()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), bin, "serve", "--policy-dir", "p", "--bundle", "b", "--addr", "nonsense")
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("exit: %v, want non-zero", err)
		}
		for _, w := range []string{"--policy-dir and --bundle are exclusive", `--addr "nonsense"`} {
			if !strings.Contains(string(out), w) {
				t.Errorf("output does not mention %q:\n%s", w, out)
			}
		}
	})
}

// TestServeEnvironment: every flag has a KEYAUTHZ_* variable, and a flag on the command line
// wins over it.
func TestServeEnvironment(t *testing.T) {
	t.Run("env only", func(t *testing.T) {
		dir := t.TempDir()
		ts := startServerEnv(t, map[string]string{
			"KEYAUTHZ_ADDR":             "127.0.0.1:0",
			"KEYAUTHZ_DATA_DIR":         dir,
			"KEYAUTHZ_BOOTSTRAP_DOMAIN": "Panels.Example",
			"KEYAUTHZ_LOG_LEVEL":        "debug",
			"KEYAUTHZ_EVAL_TIMEOUT":     "10s",
		}, "serve")
		if !strings.HasPrefix(ts.URL, "http://127.0.0.1:") {
			t.Errorf("listening on %s, want 127.0.0.1 from KEYAUTHZ_ADDR", ts.URL)
		}
		key, err := os.ReadFile(filepath.Join(dir, "bootstrap.key"))
		if err != nil {
			t.Fatalf("no bootstrap key in KEYAUTHZ_DATA_DIR: %v", err)
		}
		r := ts.must(t, call{method: "GET", path: "/api/engine/v2/domains", key: strings.TrimSpace(string(key)), host: "panels.example"})
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"domain":"panels.example"`) {
			t.Errorf("domains on the env's bootstrap domain: %d %s", r.status, r.body)
		}
		if !strings.Contains(ts.Stderr.String(), `"level":"DEBUG"`) {
			t.Errorf("KEYAUTHZ_LOG_LEVEL=debug: no debug line in the log")
		}
	})
	t.Run("flags override env", func(t *testing.T) {
		envDir, flagDir := t.TempDir(), t.TempDir()
		ts := startServerEnv(t, map[string]string{
			"KEYAUTHZ_ADDR":         "127.0.0.1:1", // would fail to bind
			"KEYAUTHZ_DATA_DIR":     envDir,
			"KEYAUTHZ_LOG_LEVEL":    "debug",
			"KEYAUTHZ_EVAL_TIMEOUT": "1ns", // overridden below
		}, "serve", "--addr", "127.0.0.1:0", "--data-dir", flagDir, "--log-level", "warn", "--eval-timeout", "10s")
		if _, err := os.Stat(filepath.Join(flagDir, "bootstrap.key")); err != nil {
			t.Errorf("no bootstrap key in --data-dir: %v", err)
		}
		if entries, _ := os.ReadDir(envDir); len(entries) != 0 {
			t.Errorf("KEYAUTHZ_DATA_DIR was used although --data-dir was given: %v", entries)
		}
		key, _ := os.ReadFile(filepath.Join(flagDir, "bootstrap.key"))
		if r := ts.must(t, call{method: "GET", path: inspectRoute, key: strings.TrimSpace(string(key))}); r.status != http.StatusOK {
			t.Errorf("inspect: %d %s", r.status, r.body)
		}
		if strings.Contains(ts.Stderr.String(), `"level":"INFO"`) || strings.Contains(ts.Stderr.String(), `"level":"DEBUG"`) {
			t.Errorf("--log-level warn did not override KEYAUTHZ_LOG_LEVEL=debug:\n%s", ts.Stderr)
		}
	})
	t.Run("KEYAUTHZ_CHECK", func(t *testing.T) {
		var stdout, stderr testutil.SyncBuffer
		env := map[string]string{"KEYAUTHZ_CHECK": "true", "KEYAUTHZ_DATA_DIR": filepath.Join(t.TempDir(), "x")}
		if err := run(t.Context(), []string{"serve"}, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
			t.Fatalf("KEYAUTHZ_CHECK=true: %v", err)
		}
		if !strings.Contains(stdout.String(), "are valid") {
			t.Errorf("stdout %q", stdout.String())
		}
	})
}

// BenchmarkCreateKeyHTTP measures a key create over loopback HTTP against a real Badger folder
// with SyncWrites on (the default of serve), and reports the median latency.
func BenchmarkCreateKeyHTTP(b *testing.B) {
	dir := b.TempDir()
	ts, err := launch(func(string) string { return "" }, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ts.cancel()
		if err := <-ts.done; err != nil {
			b.Errorf("server: %v", err)
		}
	})
	key, err := os.ReadFile(filepath.Join(dir, "bootstrap.key"))
	if err != nil {
		b.Fatal(err)
	}
	admin := strings.TrimSpace(string(key))
	ctx := context.Background()
	r, err := ts.send(ctx, call{method: "GET", path: "/api/engine/v2/users", key: admin})
	if err != nil || r.status != http.StatusOK {
		b.Fatalf("users: %v %d %s", err, r.status, r.body)
	}
	userID := strings.SplitN(strings.SplitN(string(r.body), `"id":"`, 2)[1], `"`, 2)[0]

	lat := make([]time.Duration, 0, 1024)
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		r, err := ts.send(ctx, call{method: "POST", path: "/api/engine/v2/api_keys", key: admin,
			body: map[string]any{"name": fmt.Sprintf("bench %d", i), "user_id": userID, "scopes": []string{"zones.read"}}})
		lat = append(lat, time.Since(start))
		if err != nil || r.status != http.StatusCreated {
			b.Fatalf("create: %v %d %s", err, r.status, r.body)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// serveOnce runs `keyauthz serve` in-process on dir and returns run's error and stderr; a
// server that does start is stopped at once.
func serveOnce(t *testing.T, dir string) (stderrText string, err error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr testutil.SyncBuffer
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir}, func(string) string { return "" }, pw, &stderr)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := pr.Read(b)
			if strings.Contains(string(b[:n]), "listening on") {
				cancel()
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		return stderr.String(), err
	case <-time.After(60 * time.Second):
		t.Fatal("keyauthz serve neither failed nor stopped within 60s")
		return "", nil
	}
}

// TestBootstrapRefusesPlantedFile: a bootstrap.key that exists before the first start (a
// planted 0644 file, or a link to a file elsewhere) is an error; it is neither written nor
// followed, and the store stays empty so that the next start, once it is removed, bootstraps.
func TestBootstrapRefusesPlantedFile(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "attacker-readable")
	for _, c := range []struct {
		name  string
		plant func(t *testing.T, path string)
		check func(t *testing.T, path string)
	}{
		{"0644 file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("planted\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, path string) {
			if b, _ := os.ReadFile(path); string(b) != "planted\n" {
				t.Errorf("the planted file was written: %q", b)
			}
		}},
		{"symlink to a file outside", func(t *testing.T, path string) {
			if err := os.WriteFile(outside, []byte("planted\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, path); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, path string) {
			if b, _ := os.ReadFile(outside); string(b) != "planted\n" {
				t.Errorf("the link was followed: the file it points to now holds %q", b)
			}
		}},
		{"dangling symlink", func(t *testing.T, path string) {
			if err := os.Symlink(filepath.Join(filepath.Dir(outside), "new"), path); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, path string) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(outside), "new")); err == nil {
				t.Error("the dangling link was followed: its target was created")
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// A private folder (a shared one is refused before the bootstrap is reached).
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "bootstrap.key")
			c.plant(t, path)
			stderr, err := serveOnce(t, dir)
			if err == nil || !strings.Contains(err.Error(), "bootstrap.key already exists") {
				t.Fatalf("serve with a planted bootstrap.key: %v, want an error saying it exists; stderr:\n%s", err, stderr)
			}
			c.check(t, path)
			if strings.Contains(stderr, "bootstrapped") {
				t.Errorf("the bootstrap was logged as done:\n%s", stderr)
			}
			// Removed, the next start bootstraps: nothing was stored the first time.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			ts := startServer(t, dir)
			if ts.AdminKey == "" || !strings.Contains(ts.Stderr.String(), "bootstrapped") {
				t.Fatalf("no bootstrap after the planted file was removed; stderr:\n%s", ts.Stderr)
			}
		})
	}
}

// TestDataDirMode: a new data folder is created 0700 with bootstrap.key 0600, even under a
// umask that narrows them, and an empty one that others could use is made 0700; a folder with
// files in it that group or others can use is refused with a `chmod 700` hint, a non-zero
// exit, nothing opened in it and its mode left alone.
func TestDataDirMode(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	checkModes := func(t *testing.T, dir string) {
		t.Helper()
		for path, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, filepath.Join(dir, "bootstrap.key"): 0o600} {
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != want {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
			}
		}
	}
	t.Run("fresh start under umask 0277", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new", "data")
		cmd := exec.Command("/bin/sh", "-c", `umask 0277 && exec "$0" "$@"`, bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--eval-timeout", "10s")
		pr, pw := io.Pipe()
		var stderr testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr, cmd.Env = pw, &stderr, []string{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { err := cmd.Wait(); pw.CloseWithError(io.EOF); exited <- err }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		waitListening(t, pr, &stderr)
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		checkModes(t, dir)
	})
	t.Run("empty 0777 folder", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		ts := startServer(t, dir)
		ts.Stop(t)
		checkModes(t, dir)
	})
	for _, mode := range []os.FileMode{0o755, 0o750, 0o707, 0o701} {
		t.Run(fmt.Sprintf("used folder made %04o", mode), func(t *testing.T) {
			dir := t.TempDir()
			startServer(t, dir).Stop(t)
			before, _ := os.ReadDir(dir)
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir)
			cmd.Env = []string{}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("keyauthz serve on a %04o folder: %v, want a non-zero exit; output:\n%s", mode, err, out)
			}
			if !strings.Contains(string(out), "chmod 700 "+dir) {
				t.Errorf("the error does not tell to chmod 700 the folder:\n%s", out)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(before) {
				t.Errorf("files were created in the refused folder: %v, before %v", after, before)
			}
			if fi, _ := os.Stat(dir); fi.Mode().Perm() != mode {
				t.Errorf("the folder's mode was changed to %v", fi.Mode().Perm())
			}
		})
	}
	t.Run("folder with a planted file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		stderr, err := serveOnce(t, dir)
		if err == nil || !strings.Contains(err.Error(), "chmod 700") {
			t.Fatalf("serve on a 0755 folder with a file in it: %v, want a refusal; stderr:\n%s", err, stderr)
		}
	})
	t.Run("a link to a folder", func(t *testing.T) {
		target := t.TempDir()
		link := filepath.Join(t.TempDir(), "data")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		stderr, err := serveOnce(t, link)
		if err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("serve on a link: %v, want a refusal; stderr:\n%s", err, stderr)
		}
		if entries, _ := os.ReadDir(target); len(entries) != 0 {
			t.Errorf("files were created through the link: %v", entries)
		}
	})
	t.Run("a folder of another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a folder to another user")
		}
		dir := t.TempDir()
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		stderr, err := serveOnce(t, dir)
		if err == nil || !strings.Contains(err.Error(), "owned by another user") {
			t.Fatalf("serve on another user's folder: %v, want a refusal; stderr:\n%s", err, stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("files were created in another user's folder: %v", entries)
		}
	})
}

// TestDecisionLogFile: the decision log is never written through a link or into another
// user's file, and an existing file of ours is narrowed to 0600.
func TestDecisionLogFile(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.txt")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openDecisionLog(link, io.Discard); err == nil {
		t.Error("the decision log was opened through a link")
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	mine := filepath.Join(dir, "decisions.log")
	if err := os.WriteFile(mine, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, closeLog, err := openDecisionLog(mine, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	closeLog()
	if fi, _ := os.Stat(mine); fi.Mode().Perm() != 0o600 {
		t.Errorf("an existing decision log keeps mode %v, want 0600", fi.Mode().Perm())
	}
	if os.Geteuid() == 0 {
		theirs := filepath.Join(dir, "theirs.log")
		if err := os.WriteFile(theirs, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, _, err := openDecisionLog(theirs, io.Discard); err == nil {
			t.Error("another user's file was opened as the decision log")
		}
	}
}

// TestCacheFlags: the caches are bounded in bytes (a count of entries bounds no memory when
// the client chooses the strings); the old count flags take only 0.
func TestCacheFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args          []string
		key, decision int64
		err           string
	}{
		{nil, 32 << 20, 32 << 20, ""},
		{[]string{"--decision-cache-bytes", "1048576", "--key-cache-bytes", "512KiB"}, 512 << 10, 1 << 20, ""},
		{[]string{"--decision-cache-bytes", "2gib"}, 32 << 20, 2 << 30, ""},
		{[]string{"--decision-cache-size", "0", "--key-cache-size", "0"}, 0, 0, ""},
		{[]string{"--decision-cache-size", "50000"}, 0, 0, "use --decision-cache-bytes"},
		{[]string{"--key-cache-bytes", "-1"}, 0, 0, "size in bytes"},
		{[]string{"--key-cache-bytes", "10MB"}, 0, 0, "size in bytes"},
	} {
		cfg, err := parseServeFlags(c.args, noEnv, io.Discard)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want an error with %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || cfg.KeyCacheBytes != c.key || cfg.DecisionCacheBytes != c.decision {
			t.Errorf("%q: key %d, decision %d, %v; want %d, %d", c.args, cfg.KeyCacheBytes, cfg.DecisionCacheBytes, err, c.key, c.decision)
		}
	}
	cfg, err := parseServeFlags(nil, func(k string) string {
		return map[string]string{"KEYAUTHZ_DECISION_CACHE_BYTES": "8MiB"}[k]
	}, io.Discard)
	if err != nil || cfg.DecisionCacheBytes != 8<<20 {
		t.Errorf("KEYAUTHZ_DECISION_CACHE_BYTES=8MiB: %d, %v", cfg.DecisionCacheBytes, err)
	}
}

// parseServeFlags parses serve's command line as the command table does (flags, then the
// environment for the flags not given, then validation) and returns the configuration.
func parseServeFlags(args []string, getenv func(string) string, _ io.Writer) (Config, error) {
	fs := flag.NewFlagSet("keyauthz serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := declareServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		return *cfg, err
	}
	envErr := setFromEnv(fs, getenv)
	return *cfg, errors.Join(append([]error{envErr}, cfg.Validate()...)...)
}

package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

// testServer is a keyauthz serve running in-process on a loopback port with a real Badger
// folder, as a user would run it. Shared by every end-to-end test of this package.
type testServer struct {
	URL      string // http://127.0.0.1:PORT
	DataDir  string
	AdminKey string // the bootstrap key
	Stderr   *testutil.SyncBuffer
	Stdout   *testutil.SyncBuffer
	cancel   context.CancelFunc
	done     chan error
}

// startServer runs `keyauthz serve --addr 127.0.0.1:0 --data-dir DIR extra...` in-process and
// waits until it listens. dataDir "" means a new t.TempDir(). The server stops at test cleanup.
func startServer(t *testing.T, dataDir string, extra ...string) *testServer {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	ts := &testServer{DataDir: dataDir, Stderr: &testutil.SyncBuffer{}, Stdout: &testutil.SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	// --eval-timeout: a loaded test machine must not turn a decision into a time-out 500 (a
	// later --eval-timeout in extra wins).
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--eval-timeout", "10s"}, extra...)
	go func() {
		err := run(ctx, args, func(string) string { return "" }, io.MultiWriter(pw, ts.Stdout), ts.Stderr)
		pw.CloseWithError(io.EOF)
		ts.done <- err
	}()
	ts.URL = waitListening(t, pr, ts.Stderr)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	t.Cleanup(func() { ts.Stop(t) })
	if key, err := os.ReadFile(filepath.Join(dataDir, "bootstrap.key")); err == nil {
		ts.AdminKey = strings.TrimSpace(string(key))
	}
	return ts
}

// waitListening reads the server's stdout until its "listening on" line and returns the URL.
func waitListening(t *testing.T, r io.Reader, stderr *testutil.SyncBuffer) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
				found <- url
				return
			}
		}
		close(found)
	}()
	select {
	case url, ok := <-found:
		if !ok {
			t.Fatalf("server exited before listening; stderr:\n%s", stderr.String())
		}
		return url
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not listen within 60s; stderr:\n%s", stderr)
	}
	return ""
}

// Stop cancels the server's context (as SIGTERM does) and waits for run to return.
func (ts *testServer) Stop(t *testing.T) {
	t.Helper()
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("server stopped with error: %v\nstderr:\n%s", err, ts.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("server did not stop within 30s")
	}
}

// buildBinary builds keyauthz once per test binary run, for tests that need a separate process
// (kill -9, signals).
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "keyauthz-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "keyauthz")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// launch runs `keyauthz ARGS...` in-process with getenv as its environment and waits until it
// listens. Unlike startServer it adds no flags and needs no *testing.T (benchmarks use it);
// the caller stops the server with ts.cancel and reads run's result from ts.done.
func launch(getenv func(string) string, args ...string) (*testServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	ts := &testServer{Stderr: &testutil.SyncBuffer{}, Stdout: &testutil.SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, args, getenv, io.MultiWriter(pw, ts.Stdout), ts.Stderr)
		pw.CloseWithError(io.EOF)
		ts.done <- err
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
				found <- url
				_, _ = io.Copy(io.Discard, pr)
				return
			}
		}
		close(found)
	}()
	select {
	case url, ok := <-found:
		if !ok {
			cancel()
			return nil, &launchError{stderr: ts.Stderr.String(), err: <-ts.done}
		}
		ts.URL = url
		return ts, nil
	case <-time.After(60 * time.Second):
		cancel()
		return nil, &launchError{stderr: ts.Stderr.String(), err: context.DeadlineExceeded}
	}
}

// startServerEnv runs `keyauthz ARGS...` in-process with exactly the environment env (for the
// KEYAUTHZ_* variables) and waits until it listens; it stops at test cleanup. DataDir and
// AdminKey are left for the caller to fill in.
func startServerEnv(t *testing.T, env map[string]string, args ...string) *testServer {
	t.Helper()
	ts, err := launch(func(k string) string { return env[k] }, args...)
	if err != nil {
		t.Fatalf("keyauthz %q with env %v did not start: %v", args, env, err)
	}
	t.Cleanup(func() { ts.Stop(t) })
	return ts
}

// launchError is a server that exited (err may be nil) or hung before listening.
type launchError struct {
	stderr string
	err    error
}

func (e *launchError) Error() string {
	if e.err == nil {
		return "exited without error before listening; stderr:\n" + e.stderr
	}
	return e.err.Error() + "; stderr:\n" + e.stderr
}

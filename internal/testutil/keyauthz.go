package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildBinary builds the keyauthz command (./cmd/keyauthz, the binary users run) into dir and
// returns the path of the executable. It runs `go build`, so it works from any folder inside
// the module.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "keyauthz")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/keyauthz/keyauthz/cmd/keyauthz").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// RunWithBinary is the body of an end-to-end package's TestMain: it builds keyauthz once into
// a temporary folder (named after prefix), stores its path in *bin, runs the tests and removes
// the folder. It returns the exit code to pass to os.Exit, 1 when the build fails.
func RunWithBinary(m *testing.M, prefix string, bin *string) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Process is a running `keyauthz serve`, started by StartKeyauthz or Start. It is stopped
// (SIGTERM, then SIGKILL after 20s) when the test that started it ends.
type Process struct {
	URL      string // http://127.0.0.1:PORT, from the process's "listening on" line
	Addr     string // 127.0.0.1:PORT
	DataDir  string // the --data-dir folder
	AdminKey string // the bootstrap key read from DataDir/bootstrap.key, "" when none was written
	Stdout   *SyncBuffer
	Stderr   *SyncBuffer

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its output is read
}

// StartKeyauthz runs `BIN serve --addr 127.0.0.1:0 --data-dir DIR --eval-timeout 10s args...`
// with DIR a new tb.TempDir, waits until it listens, and reads its bootstrap key. Any failure,
// including a missing bootstrap key, fails the test. The process's stderr is logged at cleanup
// when the test failed.
func StartKeyauthz(tb testing.TB, bin string, args ...string) *Process {
	tb.Helper()
	p, err := Start(tb, bin, tb.TempDir(), args...)
	if err != nil {
		tb.Fatalf("keyauthz: %v; stderr:\n%s", err, p.Stderr)
	}
	if p.AdminKey == "" {
		tb.Fatalf("keyauthz wrote no bootstrap key in %s; stderr:\n%s", p.DataDir, p.Stderr)
	}
	return p
}

// Start is StartKeyauthz for callers that cannot fail the test themselves, such as goroutines
// starting several processes at once: it takes the data folder (which need not exist yet),
// never calls tb.Fatal, and returns an error when the process does not listen within 60s. The
// Process is never nil, so that its Stderr can be reported along with the error. A missing
// bootstrap key is not an error (a cluster node that found the cluster bootstrapped writes
// none): AdminKey is then "".
//
// The eval timeout of 10s keeps a loaded test machine from turning a decision into a time-out
// 500.
func Start(tb testing.TB, bin, dataDir string, args ...string) (*Process, error) {
	p := &Process{DataDir: dataDir, Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--eval-timeout", "10s"}, args...)...)
	p.cmd.Env = os.Environ()
	p.cmd.Stderr = p.Stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return p, err
	}
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("keyauthz stderr:\n%s", p.Stderr)
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.Stdout.Write([]byte(line + "\n"))
			if _, url, ok := strings.Cut(line, "listening on "); ok && !sent {
				found <- url
				sent = true
			}
		}
		if !sent {
			close(found)
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case url, ok := <-found:
		if !ok {
			return p, errors.New("exited before listening")
		}
		p.URL = url
		p.Addr = strings.TrimPrefix(url, "http://")
	case <-time.After(60 * time.Second):
		return p, errors.New("did not listen within 60s")
	}
	key, err := os.ReadFile(filepath.Join(p.DataDir, "bootstrap.key"))
	switch {
	case err == nil:
		p.AdminKey = strings.TrimSpace(string(key))
	case !os.IsNotExist(err):
		return p, err
	}
	return p, nil
}

// Kill ends the process with SIGKILL (kill -9: no shutdown, nothing flushed), as a crash or
// the OOM killer would, and waits for it. Cleanup's Stop is then a no-op.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends the process SIGTERM, kills it if it has not exited within 20s, and waits for it.
// It is safe to call more than once; cleanup calls it too.
func (p *Process) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/diskspace"
)

// TestDiskFull runs the keyauthz binary on a 32 MiB tmpfs the test mounts, and fills it. Badger
// writes through memory mappings, so before keyauthz guarded its writes a full disk killed it
// with SIGBUS (docs/operations.md#disk-space). Now: admin writes get 507 with a JSON body
// naming the folder and the figures, decisions answer as before, /health says degraded, the
// process lives; once space is freed writes resume, the key uses held meanwhile are written,
// and a restart finds every write that was acknowledged. A start on a disk still too full
// fails with a clear error and exit code 1, not a signal. A separate process, because a SIGBUS
// would kill the test binary itself.
func TestDiskFull(t *testing.T) {
	fs := mountTmpfs(t, 32<<20)
	dataDir := filepath.Join(fs, "data")
	filler := newFiller(t, fs)

	p := startProcess(t, dataDir)
	w := attachWorld(t, p.testServer)
	userID := w.createUser(t, "Room 1 Panel", false)
	var acked []keyRecord // every key whose create was answered 201
	for i := range 3 {
		acked = append(acked, w.createKey(t, bookingPanel(userID, fmt.Sprintf("before %d", i))))
	}
	panel := *acked[0].XAPIKey
	decisions := []struct {
		method, path string
		want         decisionResult
	}{
		{"GET", "/api/engine/v2/systems", decisionResult{Allow: true, Status: 200}},
		{"POST", "/api/engine/v2/systems/sys-1/Bookings_1/book", decisionResult{Allow: true, Status: 200}},
		{"GET", "/api/engine/v2/api_keys", decisionResult{Status: 403}},
		{"DELETE", "/api/engine/v2/systems/sys-1", decisionResult{Status: 403}},
	}
	checkDecisions := func(when string) {
		t.Helper()
		for _, d := range decisions {
			got := w.decide(t, d.method, d.path, panel)
			got.Message, got.KeyID = "", ""
			if got != d.want {
				t.Errorf("%s: decision %s %s: %+v, want %+v", when, d.method, d.path, got, d.want)
			}
		}
		// An admin read: the panel key's own record.
		if r := w.must(t, call{method: "GET", path: inspectRoute, key: panel}); r.status != http.StatusOK {
			t.Errorf("%s: GET inspect: %d %s", when, r.status, r.body)
		}
	}
	checkDecisions("with room")

	// 1. Far below the margin: every kind of admin write is refused with 507 and the reason.
	filler.leave(t, 4<<20)
	need := uint64(0)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/engine/v2/api_keys", bookingPanel(userID, "refused")},
		{"PATCH", "/api/engine/v2/api_keys/" + acked[1].ID, map[string]any{"description": "refused"}},
		{"DELETE", "/api/engine/v2/api_keys/" + acked[2].ID, nil},
		{"POST", "/api/engine/v2/users", map[string]any{"authority_id": w.domainID, "name": "Refused", "email": "refused@example.com"}},
		{"POST", "/api/engine/v2/domains", map[string]any{"name": "refused", "domain": "refused.example.com"}},
	} {
		r := w.admin(t, c.method, c.path, c.body, http.StatusInsufficientStorage)
		free, n := parseInsufficient(t, dataDir, decode[errorBody](t, r.body).Error)
		if free >= n {
			t.Errorf("%s %s: refused with %d bytes free of %d needed", c.method, c.path, free, n)
		}
		need = n
	}
	t.Logf("margin keyauthz keeps in %s: %d bytes (%.1f MiB)", dataDir, need, float64(need)/(1<<20))

	// 2. Filled by writes: with a little more than the margin free, creates succeed until the
	// next would go below it; every one is answered, 201 or 507, and never a dropped
	// connection.
	filler.leave(t, need+256<<10)
	creates, refusedAt := 0, uint64(0)
	for i := 0; refusedAt == 0; i++ {
		if i == 5000 {
			t.Fatalf("5000 creates and still no 507 with %d bytes free", mustFree(t, fs))
		}
		r, err := w.send(t.Context(), call{method: "POST", path: "/api/engine/v2/api_keys", key: w.AdminKey, body: bookingPanel(userID, fmt.Sprintf("filling %d", i))})
		switch {
		case err != nil:
			t.Fatalf("create %d: %v; stderr:\n%s", i, err, p.Stderr)
		case r.status == http.StatusCreated:
			acked = append(acked, decode[keyRecord](t, r.body))
			creates++
		case r.status == http.StatusInsufficientStorage:
			refusedAt, _ = parseInsufficient(t, dataDir, decode[errorBody](t, r.body).Error)
		default:
			t.Fatalf("create %d: status %d, body %s", i, r.status, r.body)
		}
	}
	t.Logf("filling by writes: %d creates answered 201, then 507 at %d bytes free", creates, refusedAt)

	// 3. Reads and decisions go on; /health is a 200 saying degraded; the process lives.
	checkDecisions("on a full disk")
	// The first use ever of this key: its last_used_at can only come from the held use.
	heldKey := acked[1]
	if r := w.must(t, call{method: "GET", path: inspectRoute, key: *heldKey.XAPIKey}); r.status != http.StatusOK {
		t.Errorf("GET inspect on a full disk: %d %s", r.status, r.body)
	}
	r := w.must(t, call{method: "GET", path: "/health"})
	health := decode[struct{ Status, Error string }](t, r.body)
	if r.status != http.StatusOK || health.Status != "degraded" || !strings.HasPrefix(health.Error, "insufficient storage: "+dataDir) {
		t.Errorf("/health on a full disk: %d %s, want 200 degraded naming the folder", r.status, r.body)
	}
	// Key uses on the full disk are held, not written: the first flush after the disk filled
	// logs that it holds them (flushes run every 10 s).
	waitLog(t, p.testServer, "holding key uses in memory until disk space is back")
	select {
	case err := <-p.exited:
		t.Fatalf("keyauthz exited on a full disk: %v; stderr:\n%s", err, p.Stderr)
	default:
	}

	// 4. Space freed: writes resume at once, /health is ok, the held uses are written.
	filler.remove(t)
	acked = append(acked, w.createKey(t, bookingPanel(userID, "after")))
	if r := w.must(t, call{method: "GET", path: "/health"}); r.status != http.StatusOK || decode[struct{ Status string }](t, r.body).Status != "ok" {
		t.Errorf("/health with space back: %d %s", r.status, r.body)
	}
	waitLog(t, p.testServer, "disk space is back: held key uses written")
	got := decode[keyRecord](t, w.admin(t, "GET", "/api/engine/v2/api_keys/"+heldKey.ID, nil, http.StatusOK).body)
	if got.LastUsedAt == nil {
		t.Errorf("last_used_at of the key used on the full disk was not written once space was back")
	}

	// 5. A restart finds every acknowledged key, working, and none of the refused writes.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr:\n%s", code, p.Stderr)
	}
	p2 := startProcess(t, dataDir)
	w2 := attachWorld(t, p2.testServer)
	stored := map[string]keyRecord{}
	for _, k := range w2.listKeys(t) {
		stored[k.ID] = k
	}
	for _, k := range acked {
		if _, ok := stored[k.ID]; !ok {
			t.Errorf("acknowledged key %q lost", k.Name)
		}
	}
	for _, k := range stored {
		if k.Name == "refused" || k.Description == "refused" {
			t.Errorf("a refused write was stored: %+v", k)
		}
	}
	if want := len(acked) + 1; len(stored) != want { // + the bootstrap key
		t.Errorf("%d keys after restart, want %d", len(stored), want)
	}
	for _, k := range []keyRecord{acked[0], acked[len(acked)-2], acked[len(acked)-1]} {
		if r := w2.must(t, call{method: "GET", path: inspectRoute, key: *k.XAPIKey}); r.status != http.StatusOK {
			t.Errorf("key %q after restart: %d %s", k.Name, r.status, r.body)
		}
	}
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr:\n%s", code, p2.Stderr)
	}

	// 6. A start on a disk too full to open the store safely: an error naming the folder and
	// the figures, exit code 1, no signal, and the store untouched for the next start.
	filler = newFiller(t, fs)
	filler.leave(t, 4<<20)
	out, code, signaled := runToExit(t, "serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	if signaled || code != 1 || !strings.Contains(out, "insufficient storage: "+dataDir+" has ") {
		t.Errorf("start on a full disk: exit code %d (signal %v), output:\n%s\nwant exit code 1 and the reason", code, signaled, out)
	}
	t.Logf("start on a full disk: exit code %d: %s", code, strings.TrimSpace(out))
	filler.remove(t)
	p3 := startProcess(t, dataDir)
	if r := p3.must(t, call{method: "GET", path: inspectRoute, key: *acked[len(acked)-1].XAPIKey}); r.status != http.StatusOK {
		t.Errorf("key after the refused start: %d %s", r.status, r.body)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new temporary folder and unmounts it at
// cleanup. It skips the test, saying why, where mounting is not permitted (not root, or a
// container without CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size))
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("cannot mount a tmpfs to fill (%v): this test needs root or CAP_SYS_ADMIN", err)
	}
	if err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Still busy (a process the test could not stop): detach, so the folder goes
			// once it is free and the test's temporary folder can be removed.
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		}
	})
	return dir
}

// filler is a file that takes up the space of a small file system, so a test can set how much
// is left free.
type filler struct {
	fs string
	f  *os.File
}

func newFiller(t *testing.T, fs string) *filler {
	t.Helper()
	f, err := os.Create(filepath.Join(fs, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	return &filler{fs: fs, f: f}
}

// leave grows or shrinks the filler so that about want bytes are free (to the page).
func (fl *filler) leave(t *testing.T, want uint64) {
	t.Helper()
	free := mustFree(t, fl.fs)
	fi, err := fl.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	if free > want {
		// Written, not truncated: tmpfs (like most file systems) gives a sparse file no pages.
		grow := int64(free - want)
		buf := make([]byte, 1<<20)
		for grow > 0 {
			n := min(grow, int64(len(buf)))
			if _, err := fl.f.WriteAt(buf[:n], size); err != nil {
				t.Fatalf("fill: %v", err)
			}
			size += n
			grow -= n
		}
	} else if err := fl.f.Truncate(max(0, size-int64(want-free))); err != nil {
		t.Fatal(err)
	}
	t.Logf("filler: %d bytes free (asked for %d)", mustFree(t, fl.fs), want)
}

func (fl *filler) remove(t *testing.T) {
	t.Helper()
	_ = fl.f.Close()
	if err := os.Remove(fl.f.Name()); err != nil {
		t.Fatal(err)
	}
}

func mustFree(t *testing.T, path string) uint64 {
	t.Helper()
	free, err := diskspace.Free(path)
	if err != nil {
		t.Fatal(err)
	}
	return free
}

// parseInsufficient reads a 507's message, "insufficient storage: DIR has N bytes free,
// keyauthz needs M", checking that it names dir.
func parseInsufficient(t *testing.T, dir, msg string) (free, need uint64) {
	t.Helper()
	rest, ok := strings.CutPrefix(msg, "insufficient storage: "+dir+" ")
	if !ok {
		t.Fatalf("507 message %q does not name %s", msg, dir)
	}
	if _, err := fmt.Sscanf(rest, "has %d bytes free, keyauthz needs %d", &free, &need); err != nil {
		t.Fatalf("507 message %q: %v", msg, err)
	}
	return free, need
}

// waitLog waits until the server's log holds text.
func waitLog(t *testing.T, ts *testServer, text string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(ts.Stderr.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within 60s; stderr:\n%s", text, ts.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runToExit runs the keyauthz binary with args until it exits, and returns its output, its
// exit code and whether a signal ended it.
func runToExit(t *testing.T, args ...string) (string, int, bool) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %v: %v", args, err)
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return string(out), cmd.ProcessState.ExitCode(), ws.Signaled()
}

// Package diskspace watches the free space of the file system that holds a folder, so that a
// store writing through memory-mapped files (Badger) can refuse a write while there is still
// room, instead of taking a SIGBUS when the file system cannot supply a page. See
// docs/operations.md#disk-space for the margin keyauthz keeps and why.
package diskspace

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Free returns the bytes of the file system holding path that an unprivileged process may
// still use (statfs f_bavail × f_bsize). Blocks reserved for root are left out on purpose: a
// margin counted in them would be gone the day keyauthz runs as another user. A path that
// does not exist yet is measured at the nearest folder above it that does, the file system
// it will be created on.
func Free(path string) (uint64, error) {
	// syscall rather than golang.org/x/sys/unix: statfs is all this needs, and the module
	// then needs no new direct dependency.
	var st syscall.Statfs_t
	at := path
	err := syscall.Statfs(at, &st)
	for errors.Is(err, syscall.ENOENT) && filepath.Dir(at) != at {
		at = filepath.Dir(at)
		err = syscall.Statfs(at, &st)
	}
	if err != nil {
		return 0, fmt.Errorf("free space of %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil //nolint:gosec // Bsize is a positive block size
}

// LowError reports a file system with less free space than needed.
type LowError struct {
	Path string
	Free uint64 // bytes free when it was measured
	Need uint64 // bytes the caller needs free
}

// Error is the text clients see in a 507: it names the folder and both figures, so an operator
// reading it knows how much to free.
func (e *LowError) Error() string {
	return fmt.Sprintf("insufficient storage: %s has %d bytes free, keyauthz needs %d", e.Path, e.Free, e.Need)
}

// Require returns a *LowError if the file system holding path has less than need bytes free,
// and the statfs error if it cannot be measured.
func Require(path string, need uint64) error {
	free, err := Free(path)
	if err != nil {
		return err
	}
	if free < need {
		return &LowError{Path: path, Free: free, Need: need}
	}
	return nil
}

// Guard measures the free space of one folder against a margin that may change over time (a
// store's margin grows with its size). Check measures now; Watch measures on an interval and
// reports changes. It is safe for concurrent use.
type Guard struct {
	path string
	need func() uint64
	free func(string) (uint64, error) // Free, or a stand-in in tests

	mu   sync.Mutex
	last error // result of the latest measurement
}

// NewGuard returns a guard of the folder path that needs need() bytes free.
func NewGuard(path string, need func() uint64) *Guard {
	return &Guard{path: path, need: need, free: Free}
}

// SetFree replaces the measurement (statfs) with free, for tests that cannot fill a real disk.
func (g *Guard) SetFree(free func(path string) (uint64, error)) { g.free = free }

// Path is the folder the guard measures.
func (g *Guard) Path() string { return g.path }

// Check measures the free space now: nil when at least the margin is free, a *LowError when
// not, or the statfs error. A statfs per call costs about a microsecond, nothing next to the
// synced disk write it guards, and it means a write is judged on the space left at that moment.
func (g *Guard) Check() error {
	err := g.measure()
	g.mu.Lock()
	g.last = err
	g.mu.Unlock()
	return err
}

func (g *Guard) measure() error {
	free, err := g.free(g.path)
	if err != nil {
		return err
	}
	if need := g.need(); free < need {
		return &LowError{Path: g.path, Free: free, Need: need}
	}
	return nil
}

// Err is the result of the latest Check, without measuring again.
func (g *Guard) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

// Watch calls Check every interval until ctx ends, and calls changed whenever the result goes
// from nil to an error, from an error to nil, or from one kind of failure to another (low
// space to a statfs error), so a caller can log the moment writes stop and the moment they
// resume without logging every tick.
func (g *Guard) Watch(ctx context.Context, interval time.Duration, changed func(err error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	prev := g.Check()
	if prev != nil {
		changed(prev)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := g.Check()
		if kind(err) != kind(prev) {
			changed(err)
		}
		prev = err
	}
}

// kind sorts a measurement into ok (0), low (1) or unmeasurable (2).
func kind(err error) int {
	var low *LowError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &low):
		return 1
	default:
		return 2
	}
}

package diskspace

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestFree(t *testing.T) {
	free, err := Free(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if free == 0 {
		t.Errorf("Free of a temporary folder is 0")
	}
	// A folder about to be created is measured on its parent's file system.
	if got, err := Free(filepath.Join(t.TempDir(), "not", "yet")); err != nil || got == 0 {
		t.Errorf("Free of a folder not created yet: %d, %v", got, err)
	}
}

func TestRequire(t *testing.T) {
	dir := t.TempDir()
	if err := Require(dir, 1); err != nil {
		t.Errorf("Require 1 byte: %v", err)
	}
	err := Require(dir, 1<<62)
	var low *LowError
	if !errors.As(err, &low) {
		t.Fatalf("Require 4 EiB: %v, want a *LowError", err)
	}
	if low.Path != dir || low.Need != 1<<62 || low.Free == 0 {
		t.Errorf("LowError %+v", low)
	}
}

func TestLowErrorMessage(t *testing.T) {
	got := (&LowError{Path: "/var/lib/keyauthz", Free: 1000, Need: 2000}).Error()
	want := "insufficient storage: /var/lib/keyauthz has 1000 bytes free, keyauthz needs 2000"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestGuardCheck(t *testing.T) {
	var free, need atomic.Uint64
	free.Store(100)
	need.Store(50)
	g := NewGuard("/data", need.Load)
	g.SetFree(func(string) (uint64, error) { return free.Load(), nil })

	if err := g.Check(); err != nil {
		t.Fatalf("100 free, 50 needed: %v", err)
	}
	free.Store(49)
	err := g.Check()
	var low *LowError
	if !errors.As(err, &low) || low.Free != 49 || low.Need != 50 || low.Path != "/data" {
		t.Fatalf("49 free, 50 needed: %v", err)
	}
	if g.Err() != err {
		t.Errorf("Err after Check: %v, want %v", g.Err(), err)
	}
	need.Store(40) // the margin follows need(), measured at each Check
	if err := g.Check(); err != nil {
		t.Errorf("49 free, 40 needed: %v", err)
	}
	broken := errors.New("statfs failed")
	g.SetFree(func(string) (uint64, error) { return 0, broken })
	if err := g.Check(); !errors.Is(err, broken) {
		t.Errorf("statfs failure: %v", err)
	}
}

// TestGuardWatch: Watch reports each change of state once (not every tick): low, then back.
func TestGuardWatch(t *testing.T) {
	var free atomic.Uint64
	free.Store(100)
	g := NewGuard("/data", func() uint64 { return 50 })
	g.SetFree(func(string) (uint64, error) { return free.Load(), nil })
	ctx, cancel := context.WithCancel(t.Context())
	changes := make(chan error, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Watch(ctx, time.Millisecond, func(err error) { changes <- err })
	}()
	next := func() error {
		t.Helper()
		select {
		case err := <-changes:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("no change reported within 30s")
			return nil
		}
	}
	free.Store(10)
	var low *LowError
	if err := next(); !errors.As(err, &low) {
		t.Fatalf("first change: %v, want a *LowError", err)
	}
	free.Store(100)
	if err := next(); err != nil {
		t.Fatalf("second change: %v, want nil (space back)", err)
	}
	cancel()
	<-done
	close(changes)
	for err := range changes {
		t.Errorf("a change reported with no change of state: %v", err)
	}
}

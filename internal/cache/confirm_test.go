package cache

import (
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// confirmingSource is a real in-memory store whose view the test declares confirmed or not
// (as etcdstore reports it from its watch and heartbeat; the etcd-backed tests are in
// internal/etcdstore/confirm_test.go).
type confirmingSource struct {
	*countingSource
	since       time.Time
	unreachable error
	resync      []func()
}

func (c *confirmingSource) UnconfirmedSince() time.Time { return c.since }
func (c *confirmingSource) OnResync(fn func())          { c.resync = append(c.resync, fn) }
func (c *confirmingSource) Unreachable() error {
	if c.since.IsZero() {
		return nil
	}
	return c.unreachable
}

// confirm runs the resync hooks, then reports the view confirmed, as etcdstore does.
func (c *confirmingSource) confirm() {
	for _, fn := range c.resync {
		fn()
	}
	c.since, c.unreachable = time.Time{}, nil
}

var errDown = keys.Errorf(keys.EUNAVAILABLE, "store unavailable: test")

// TestStaleGraceServing: while the view is unconfirmed, the caches answer only within the
// grace after the last confirmation; past it every lookup reads the source, or fails at once
// when the source knows it is unreachable; a confirmation empties every cache.
func TestStaleGraceServing(t *testing.T) {
	ctx := t.Context()
	now := time.Now()
	tests := []struct {
		note        string
		grace       time.Duration
		since       time.Duration // before now; 0: confirmed
		unreachable bool
		wantReads   int // store reads for a lookup of a cached key and of a cached host
		wantErr     bool
	}{
		{note: "confirmed", since: 0, wantReads: 0},
		{note: "unconfirmed, grace 0", since: time.Millisecond, wantReads: 2},
		{note: "unconfirmed, within the grace", grace: time.Hour, since: time.Minute, wantReads: 0},
		{note: "unconfirmed, past the grace", grace: time.Minute, since: time.Hour, wantReads: 2},
		{note: "unreachable, past the grace: no read, an EUNAVAILABLE error", since: time.Millisecond, unreachable: true, wantReads: 0, wantErr: true},
		{note: "unreachable, within the grace: cached answers", grace: time.Hour, since: time.Minute, unreachable: true, wantReads: 0},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			cs, key, _ := newSource(t)
			src := &confirmingSource{countingSource: cs}
			c := New(src, Options{KeyBytes: 1 << 20, UnknownKeyBytes: 1 << 20, HostBytes: 1 << 20, StaleGrace: tc.grace})
			dec := NewDecisions(1<<20, c)
			var deps Deps
			if _, err := c.AuthenticateDeps(ctx, key, now, &deps); err != nil {
				t.Fatal(err)
			}
			if _, err := c.HostDomainDeps(ctx, "acme.example.com", &deps); err != nil {
				t.Fatal(err)
			}
			dk := DecisionKey{Method: "GET", Path: "/x", KeyID: "k", Policy: opa.Policy{Revision: "r"}}
			dec.Add(&dk, &deps, opa.Decision{Allow: true, Status: 200}, nil)
			cs.keyReads, cs.hostReads = 0, 0

			if tc.since > 0 {
				src.since = time.Now().Add(-tc.since)
			}
			if tc.unreachable {
				src.unreachable = errDown
			}
			_, kerr := c.Authenticate(ctx, key, now)
			_, herr := c.DomainByHost(ctx, "acme.example.com")
			_, served := dec.Get(&dk, now)
			if got := cs.keyReads + cs.hostReads; got != tc.wantReads {
				t.Errorf("%d store reads, want %d", got, tc.wantReads)
			}
			if wantServed := tc.wantReads == 0 && !tc.wantErr; served != wantServed {
				t.Errorf("cached decision served: %v, want %v", served, wantServed)
			}
			for _, err := range []error{kerr, herr} {
				switch {
				case tc.wantErr && keys.ErrorCode(err) != keys.EUNAVAILABLE:
					t.Errorf("lookup: %v, want EUNAVAILABLE", err)
				case !tc.wantErr && err != nil:
					t.Errorf("lookup: %v", err)
				}
			}

			// Confirmed again: every cache is empty, and answers come from the store.
			src.confirm()
			if cost := c.Cost(); cost.Keys+cost.UnknownKeys+cost.Hosts != 0 {
				t.Errorf("after the resync: %+v cached, want nothing", cost)
			}
			if _, n := dec.Cost(); n != 0 {
				t.Errorf("after the resync: %d decisions cached, want none", n)
			}
			if _, ok := dec.Get(&dk, now); ok {
				t.Error("a decision made before the resync was served after it")
			}
			reads := cs.keyReads
			if _, err := c.Authenticate(ctx, key, now); err != nil || cs.keyReads != reads+1 {
				t.Errorf("after the resync: %v, %d reads, want one read", err, cs.keyReads-reads)
			}
		})
	}
}

// TestPurgeStopsARacingFill: an answer read before a purge is not cached after it.
func TestPurgeStopsARacingFill(t *testing.T) {
	ctx := t.Context()
	cs, key, _ := newSource(t)
	src := &confirmingSource{countingSource: cs}
	c := New(src, DefaultOptions())
	cs.afterRead = src.confirm // the purge lands between the store read and the fill
	if _, err := c.Authenticate(ctx, key, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Authenticate(ctx, key, time.Now()); err != nil {
		t.Fatal(err)
	}
	if cs.keyReads != 2 {
		t.Errorf("%d store reads, want 2: the answer read across the purge was cached", cs.keyReads)
	}
}

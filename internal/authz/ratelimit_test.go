package authz

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

func limitedKey(id string, rate float64, burst int, updatedAt int64) *keys.APIKey {
	return &keys.APIKey{ID: id, UpdatedAt: updatedAt, RateLimit: &keys.RateLimit{Rate: rate, Burst: burst}}
}

// TestLimiterBucket follows one key's bucket on a fake clock: the burst, the refill, the time
// until the next token, and a new bucket when the key or its limit changes.
func TestLimiterBucket(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	type step struct {
		note  string
		at    time.Duration // after t0
		key   *keys.APIKey
		ok    bool
		retry time.Duration // when refused
	}
	k := limitedKey("k", 2, 3, 100) // 2 a second, 3 at once
	steps := []step{
		{"burst 1", 0, k, true, 0},
		{"burst 2", 0, k, true, 0},
		{"burst 3", 0, k, true, 0},
		{"empty", 0, k, false, 500 * time.Millisecond},
		{"still empty, a quarter second later", 250 * time.Millisecond, k, false, 250 * time.Millisecond},
		{"one token refilled", 500 * time.Millisecond, k, true, 0},
		{"empty again", 500 * time.Millisecond, k, false, 500 * time.Millisecond},
		{"a refused request took no token", time.Second, k, true, 0},
		{"the key changed: a full bucket", time.Second, limitedKey("k", 2, 3, 101), true, 0},
		{"full bucket 2", time.Second, limitedKey("k", 2, 3, 101), true, 0},
		{"full bucket 3", time.Second, limitedKey("k", 2, 3, 101), true, 0},
		{"full bucket empty", time.Second, limitedKey("k", 2, 3, 101), false, 500 * time.Millisecond},
		{"the limit changed, same updated_at: a new bucket", time.Second, limitedKey("k", 0.5, 1, 101), true, 0},
		{"the new limit applies", time.Second, limitedKey("k", 0.5, 1, 101), false, 2 * time.Second},
		{"another key has its own bucket", time.Second, limitedKey("other", 0.5, 1, 101), true, 0},
	}
	l := newLimiter(0)
	for _, s := range steps {
		ok, retry := l.take(s.key, t0.Add(s.at))
		if ok != s.ok || retry != s.retry {
			t.Fatalf("%s: take = %v, %v; want %v, %v", s.note, ok, retry, s.ok, s.retry)
		}
	}
	if got := l.limited.Load(); got != 5 {
		t.Errorf("limited = %d, want 5", got)
	}
	if got := l.buckets.Load(); got != 2 {
		t.Errorf("buckets = %d, want 2", got)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {1000 * time.Second, 1000}} {
		if got := RetryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

// TestLimiterIsBounded uses far more keys than the bound: the buckets held never exceed it.
func TestLimiterIsBounded(t *testing.T) {
	const bound = 256
	l := newLimiter(bound)
	now := time.Unix(1_800_000_000, 0)
	for i := range 20_000 {
		k := limitedKey("key-"+strconv.Itoa(i), 1, 5, 1)
		if ok, _ := l.take(k, now); !ok {
			t.Fatalf("key %d: its first request was refused", i)
		}
		if n := l.buckets.Load(); n > bound {
			t.Fatalf("after %d keys, %d buckets held, bound %d", i+1, n, bound)
		}
	}
	held := 0
	for i := range l.shards {
		held += len(l.shards[i].m)
	}
	if int64(held) != l.buckets.Load() {
		t.Errorf("the gauge says %d buckets, the shards hold %d", l.buckets.Load(), held)
	}
}

// TestLimiterConcurrent takes from one bucket from many goroutines at a frozen instant: exactly
// the burst is allowed.
func TestLimiterConcurrent(t *testing.T) {
	l := newLimiter(0)
	now := time.Unix(1_800_000_000, 0)
	k := limitedKey("k", 1, 50, 1)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if ok, _ := l.take(k, now); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 50 {
		t.Errorf("%d allowed, want the burst 50", allowed.Load())
	}
}

// TestLimiterTinyRate: a valid but tiny rate puts the next token beyond what a Duration can
// hold; the refusal must still say to wait (the longest wait), never "retry in a second".
func TestLimiterTinyRate(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, rate := range []float64{1e-300, 1e-12, 1e-9} {
		l := newLimiter(0)
		k := limitedKey("k", rate, 1, 100)
		if ok, _ := l.take(k, t0); !ok {
			t.Fatalf("rate %g: the first request was refused", rate)
		}
		ok, retry := l.take(k, t0)
		if ok || retry != maxRetryAfter {
			t.Errorf("rate %g: take = %v, %v; want false, %v", rate, ok, retry, maxRetryAfter)
		}
	}
}

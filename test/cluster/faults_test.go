package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// writer creates keys on one node from a few goroutines until halted, and keeps every key it
// was told was created (201): those must never be lost, whatever breaks.
type writer struct {
	n      *node
	mu     sync.Mutex
	acked  []string
	codes  map[int]int // answers by status; 0 counts transport errors (a killed node)
	sample map[int]string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startWriter(n *node, admin, userID, prefix string, workers int, pause time.Duration) *writer {
	w := &writer{n: n, codes: map[int]int{}, sample: map[int]string{}, stop: make(chan struct{})}
	for g := range workers {
		w.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-w.stop:
					return
				case <-time.After(pause):
				}
				st, k, raw, err := n.tryCreateKey(admin, userID, fmt.Sprintf("%s-%d-%d", prefix, g, i), "user")
				w.mu.Lock()
				switch {
				case err != nil && st == 0:
					w.codes[0]++
					w.sample[0] = err.Error()
				case err != nil:
					w.codes[-1]++ // a 201 without a key: counted apart, and reported by the check
					w.sample[-1] = err.Error()
				default:
					w.codes[st]++
					if st == 201 {
						w.acked = append(w.acked, k.ID)
					} else {
						w.sample[st] = string(raw)
					}
				}
				w.mu.Unlock()
			}
		})
	}
	return w
}

// halt stops the writer and waits for its requests to end.
func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("writer on %s: %d acknowledged, answers by status %v (0: no answer)", w.n.name, len(w.acked), w.codes)
}

// verify checks on node on that every key the writer was told was created is there.
func (w *writer) verify(t *testing.T, on *node, admin string) {
	t.Helper()
	w.mu.Lock()
	acked := slices.Clone(w.acked)
	bad := w.codes[-1]
	w.mu.Unlock()
	if bad > 0 {
		t.Errorf("%d answers of %s were 201 without a key: %s", bad, w.n.name, w.sample[-1])
	}
	lost := 0
	for _, id := range acked {
		if st, raw := on.call(t, "GET", "/api/engine/v2/api_keys/"+id, admin, nil, nil); st != 200 {
			lost++
			if lost <= 5 {
				t.Errorf("key %s acknowledged (201) by %s is not on %s: %d %s", id, w.n.name, on.name, st, raw)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged keys lost", lost, len(acked))
	}
}

// until calls f until it reports done, at most for limit; it returns how long that took and
// how many calls were not done, and fails the test when limit passes.
func until(t *testing.T, limit time.Duration, what string, f func() (bool, string)) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	misses := 0
	for {
		ok, detail := f()
		if ok {
			return time.Since(start), misses
		}
		misses++
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v (last: %s)", what, limit, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allowed(n *node, key string) func() (bool, string) {
	return func() (bool, string) {
		d, err := n.tryDecide(key)
		if err != nil {
			return false, err.Error()
		}
		return d.Allow, d.String()
	}
}

func created(n *node, admin, userID, name string) func() (bool, string) {
	i := 0
	return func() (bool, string) {
		i++
		st, _, raw, err := n.tryCreateKey(admin, userID, fmt.Sprintf("%s-%d", name, i), "user")
		if err != nil {
			return false, err.Error()
		}
		return st == 201, fmt.Sprintf("%d %s", st, raw)
	}
}

// healthOK reports whether n's /health says ok (its view of etcd confirmed).
func healthOK(n *node) func() (bool, string) {
	return func() (bool, string) {
		st, raw, err := n.do("GET", "/health", "", nil)
		var h struct {
			Status string `json:"status"`
		}
		return err == nil && st == 200 && json.Unmarshal(raw, &h) == nil && h.Status == "ok", fmt.Sprintf("%d %s %v", st, raw, err)
	}
}

// waitLeader waits until the running members have elected a leader, and returns it.
func waitLeader(t *testing.T, c *etcdCluster) *member {
	t.Helper()
	var l *member
	until(t, 30*time.Second, "an etcd leader", func() (bool, string) {
		var err error
		l, err = c.leader()
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return l
}

// etcdFaults: while a writer creates keys on B (one every 50 ms), the etcd leader is killed
// (decisions go on; writes too, once the two members left have elected a new leader), then a
// second member is stopped (no quorum: writes 503 with a clear error; a key cached on A or B
// is no longer allowed, since they run with --stale-grace 0; C, with a grace, still allows the
// keys it has cached and nothing else), then both start again (writes resume, every
// acknowledged write is there).
func (c *cluster) etcdFaults(t *testing.T) {
	a, b, cc := c.node("A"), c.node("B"), c.node("C")
	user := createUser(t, a, c.admin, c.domainID, "faults", false)
	held := createKey(t, a, c.admin, user, "held", "user")
	unseen := createKey(t, a, c.admin, user, "unseen-by-c", "user") // never decided on C
	for _, n := range c.nodes {
		for range 2 {
			if d := n.decide(t, held.Key); !d.Allow {
				t.Fatalf("held key on %s: %v", n.name, d)
			}
		}
	}
	w := startWriter(b, c.admin, user, "bg", 1, 50*time.Millisecond)
	defer w.halt()
	until(t, 30*time.Second, "the writer's first key", func() (bool, string) { return w.ackedCount() > 0, w.String() })

	// One member stopped: the leader, killed (SIGKILL: no leadership handed over), so that
	// the two left must notice and elect a new one.
	first := waitLeader(t, c.etcd)
	first.kill()
	t.Logf("killed etcd %s, the leader", first.name)
	for _, n := range c.nodes {
		took, misses := until(t, 30*time.Second, n.name+": the held key allowed with one member stopped", allowed(n, held.Key))
		t.Logf("one member stopped: %s allowed the held key after %v (%d refusals before)", n.name, took.Round(time.Millisecond), misses)
		took, misses = until(t, 30*time.Second, n.name+": a write with one member stopped", created(n, c.admin, user, "one-down-"+n.name))
		t.Logf("one member stopped: %s wrote after %v (%d failed writes before)", n.name, took.Round(time.Millisecond), misses)
	}
	fresh := createKey(t, a, c.admin, user, "made-with-one-down", "user")
	for _, n := range c.others(a) {
		if d := n.decide(t, fresh.Key); !d.Allow {
			t.Errorf("one member stopped: key created on A refused on %s: %v", n.name, d)
		}
	}
	t.Logf("one member stopped: %s", w)
	// Every node confirms its view again: a node whose watch ran on the killed member moved it
	// to another and, confirmed again, dropped its caches (changes may have been missed). Then
	// each caches the held key anew.
	for _, n := range c.nodes {
		took, _ := until(t, 60*time.Second, n.name+": /health ok with one member stopped", healthOK(n))
		t.Logf("one member stopped: %s confirmed (/health ok) after %v", n.name, took.Round(time.Millisecond))
		for range 2 {
			if d := n.decide(t, held.Key); !d.Allow {
				t.Fatalf("held key on %s: %v", n.name, d)
			}
		}
	}

	// Two members stopped: the one left has no quorum.
	second := waitLeader(t, c.etcd)
	second.stop()
	t.Logf("stopped etcd %s too: no quorum", second.name)
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() {
			st, raw, err := n.do("POST", "/api/engine/v2/users", c.admin, map[string]any{
				"authority_id": c.domainID, "name": "no-quorum-" + n.name, "email": "nq-" + strings.ToLower(n.name) + "@localhost",
			})
			var body struct {
				Error string `json:"error"`
			}
			switch {
			case err != nil:
				t.Errorf("no quorum: write on %s: %v", n.name, err)
			case st != 503 || json.Unmarshal(raw, &body) != nil || !strings.Contains(body.Error, "store unavailable"):
				t.Errorf("no quorum: write on %s: %d %s, want 503 with a JSON error saying the store is unavailable", n.name, st, raw)
			default:
				t.Logf("no quorum: write on %s: %d %s", n.name, st, raw)
			}
		})
	}
	wg.Wait()
	for _, n := range c.nodes {
		var last string
		took, _ := until(t, 60*time.Second, n.name+": /health reports etcd", func() (bool, string) {
			st, raw, err := n.do("GET", "/health", "", nil)
			last = fmt.Sprintf("%d %s %v", st, raw, err)
			// "degraded" (200: cached keys still decided within C's grace) or "unhealthy"
			// (503), with the reason naming etcd; never "ok".
			var h struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			}
			return err == nil && json.Unmarshal(raw, &h) == nil && h.Status != "ok" && strings.Contains(h.Error, "etcd"), last
		})
		t.Logf("no quorum: /health on %s after %v: %s", n.name, took.Round(time.Millisecond), last)
	}
	for _, n := range []*node{a, b} {
		var last decision
		took, _ := until(t, 60*time.Second, n.name+" (--stale-grace 0): the held key refused without quorum", func() (bool, string) {
			d, err := n.tryDecide(held.Key)
			if err != nil {
				return false, err.Error()
			}
			last = d
			return !d.Allow, d.String()
		})
		if last.Status != 503 {
			t.Errorf("no quorum: %s refused the held key with %v, want status 503", n.name, last)
		}
		t.Logf("no quorum: %s (--stale-grace 0) refuses the held key %v after the stop: %v", n.name, took.Round(time.Millisecond), last)
	}
	if d, err := cc.tryDecide(held.Key); err != nil || !d.Allow {
		t.Errorf("no quorum: C (--stale-grace %s) on the held key it had cached: %v %v, want an allow", staleGrace, d, err)
	} else {
		t.Logf("no quorum: C (--stale-grace %s) on the held key it had cached: %v", staleGrace, d)
	}
	if d, err := cc.tryDecide(unseen.Key); err != nil || d.Allow || d.Status != 503 {
		t.Errorf("no quorum: C on a key it never verified: %v %v, want a 503 deny", d, err)
	} else {
		t.Logf("no quorum: C on a key it never verified: %v", d)
	}

	// Both started again.
	for _, m := range []*member{first, second} {
		if err := m.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*member{first, second} {
		if err := m.waitHealthy(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("etcd %s and %s started again", first.name, second.name)
	for _, n := range c.nodes {
		took, misses := until(t, 60*time.Second, n.name+": a write after the restart", created(n, c.admin, user, "restarted-"+n.name))
		t.Logf("restart: writes resumed on %s after %v (%d failed before)", n.name, took.Round(time.Millisecond), misses)
		took, _ = until(t, 60*time.Second, n.name+": the held key allowed after the restart", allowed(n, held.Key))
		t.Logf("restart: %s allows the held key again after %v", n.name, took.Round(time.Millisecond))
		until(t, 60*time.Second, n.name+": /health ok after the restart", healthOK(n))
	}
	w.halt()
	t.Logf("through the etcd faults: %s", w)
	if w.codes[503] == 0 {
		t.Errorf("the writer never saw a 503, though etcd lost its quorum: %s", w)
	}
	for st, n := range w.codes {
		if st != 201 && st != 503 {
			t.Errorf("the writer got %d answers %d (want only 201 or 503 store unavailable): %s", n, st, w.sample[st])
		}
	}
	w.verify(t, cc, c.admin)
}

// killNode: four writers create keys on A; A is killed with SIGKILL while they do. Every key
// A acknowledged is on B and C; B and C decide throughout; A started again on its data folder
// finds the cluster bootstrapped and decides at once.
func (c *cluster) killNode(t *testing.T) {
	a, b, cc := c.node("A"), c.node("B"), c.node("C")
	user := createUser(t, b, c.admin, c.domainID, "killed", false)
	held := createKey(t, b, c.admin, user, "held-kill", "user")
	for _, n := range c.nodes {
		if d := n.decide(t, held.Key); !d.Allow {
			t.Fatalf("held key on %s: %v", n.name, d)
		}
	}
	// Decisions on B and C all along.
	var (
		stop      = make(chan struct{})
		lg        sync.WaitGroup
		mu        sync.Mutex
		decisions int
		refused   []string
	)
	for _, n := range []*node{b, cc} {
		lg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := n.tryDecide(held.Key)
				mu.Lock()
				decisions++
				if err != nil || !d.Allow {
					refused = append(refused, fmt.Sprintf("%s: %v %v", n.name, d, err))
				}
				mu.Unlock()
			}
		})
	}
	w := startWriter(a, c.admin, user, "kill", 4, 0)
	defer w.halt()
	until(t, 30*time.Second, "20 keys written on A", func() (bool, string) { return w.ackedCount() >= 20, w.String() })
	a.Kill()
	w.halt()
	time.Sleep(300 * time.Millisecond) // B and C keep deciding after the kill
	close(stop)
	lg.Wait()
	t.Logf("kill -9 of A mid-write: %s", w)
	t.Logf("kill -9 of A: B and C made %d decisions on a held key meanwhile, %d not allowed", decisions, len(refused))
	if len(refused) > 0 {
		t.Errorf("B or C refused the held key while A was killed: %v", refused[:min(len(refused), 5)])
	}
	w.verify(t, b, c.admin)
	w.verify(t, cc, c.admin)

	// A again, on the same data folder.
	if err := a.start(t); err != nil {
		t.Fatalf("A after the kill: %v\n%s", err, a.Stderr)
	}
	if strings.Contains(a.Stderr.String(), "bootstrapped: created") {
		t.Errorf("A bootstrapped the cluster again after its restart:\n%s", a.Stderr)
	}
	if d := a.decide(t, held.Key); !d.Allow {
		t.Errorf("A after its restart refused the held key: %v", d)
	}
	var domains []struct{}
	if st, raw := a.call(t, "GET", "/api/engine/v2/domains", c.admin, nil, &domains); st != 200 || len(domains) != 1 {
		t.Errorf("domains on A after its restart: %d %s (want exactly one)", st, raw)
	}
}

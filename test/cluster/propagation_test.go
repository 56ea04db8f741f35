package cluster

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// change is one write of the propagation test, as the test made it.
type change struct {
	writer   int // index of the node that made it
	key      int // the deleted key's index in keys, or -1 for a sys_admin toggle
	sysAdmin bool
	sent     time.Time // the request left the test
	answered time.Time // its answer came back
}

// record is one decision of the background load.
type record struct {
	node       int
	key        int // index in keys, -1 for the toggled user's key
	start, end time.Time
	d          decision
	err        error
}

// propagation makes changes one at a time, each on the next node in turn: half of them
// delete a key every node has just allowed, half flip the sys_admin flag of a user whose
// admin key every node has just decided. After each answer it asks the writing node once
// (the old state there is a stale answer: none is allowed) and the two other nodes until
// they show the change (the lag from the answer is one propagation sample). With load, all
// the while two load workers per node decide the keys being changed around the current change; after
// the run, every decision that started after a change had been answered and still showed the
// state from before it is counted as stale: none may come from the writing node, none from
// another node more than staleWindow after the answer.
func (c *cluster) propagation(t *testing.T, load bool) {
	n := changes(t)
	workers := 0
	if load {
		workers = 2 * len(c.nodes)
	}
	a := c.nodes[0]
	hits := make([]map[string]float64, len(c.nodes))
	for i, nd := range c.nodes {
		hits[i] = nd.cacheHits(t)
	}

	// The keys to delete (one per delete change) and the admin key whose user is toggled.
	tag := map[bool]string{false: "quiet", true: "loaded"}[load]
	user := createUser(t, a, c.admin, c.domainID, "churn-"+tag, false)
	keys := make([]createdKey, (n+1)/2)
	for i := range keys {
		keys[i] = createKey(t, c.nodes[i%3], c.admin, user, fmt.Sprintf("churn-%s-%d", tag, i), "user")
	}
	op := createUser(t, a, c.admin, c.domainID, "toggled-"+tag, true)
	opKey := createKey(t, a, c.admin, op, "toggled-"+tag, "admin")
	keyOf := func(i int) string {
		if i < 0 {
			return opKey.Key
		}
		return keys[i].Key
	}

	// The load: each worker decides, at random, one of the keys around the current delete or
	// the toggled key.
	var (
		cur     atomic.Int64 // index of the key the current or next delete removes
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		records []record
	)
	for w := range workers {
		ni := w % len(c.nodes)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var mine []record
			for {
				select {
				case <-stop:
					mu.Lock()
					records = append(records, mine...)
					mu.Unlock()
					return
				default:
				}
				k := int(cur.Load()) + rng.IntN(5) - 2
				if k < 0 || k >= len(keys) || rng.IntN(3) == 0 {
					k = -1
				}
				r := record{node: ni, key: k, start: time.Now()}
				r.d, r.err = c.nodes[ni].tryDecide(keyOf(k))
				r.end = time.Now()
				mine = append(mine, r)
			}
		})
	}

	var (
		log      []change
		lags     = map[string][]time.Duration{}
		writerOK = true
		admin    = true
	)
	loadBefore := loadAvg()
	started := time.Now()
	for i := range n {
		wi := i % len(c.nodes)
		w := c.nodes[wi]
		ch := change{writer: wi, key: -1}
		var shows, old func(decision) bool
		kind := "delete"
		if i%2 == 0 {
			ch.key = i / 2
			cur.Store(int64(ch.key))
			for _, nd := range c.nodes { // every node allows it (and may cache it) first
				if d := nd.decide(t, keyOf(ch.key)); !d.Allow {
					t.Fatalf("change %d: key %d refused on %s before its delete: %v", i, ch.key, nd.name, d)
				}
			}
			ch.sent = time.Now()
			deleteKey(t, w, c.admin, keys[ch.key].ID)
			shows, old = refused, allows
		} else {
			kind = "sys_admin"
			before := "user"
			if admin {
				before = "admin"
			}
			for _, nd := range c.nodes {
				if d := nd.decide(t, opKey.Key); !hasPermissions(before)(d) {
					t.Fatalf("change %d: toggled key on %s before the change: %v, want %s", i, nd.name, d, before)
				}
			}
			admin = !admin
			ch.sysAdmin = admin
			shows, old = hasPermissions(map[bool]string{true: "admin", false: "user"}[admin]), hasPermissions(before)
			ch.sent = time.Now()
			setSysAdmin(t, w, c.admin, op, admin)
		}
		ch.answered = time.Now()
		log = append(log, ch)
		if d := w.decide(t, keyOf(ch.key)); !shows(d) {
			writerOK = false
			t.Errorf("change %d (%s) on %s: the writing node answered the old state after answering the write: %v", i, kind, w.name, d)
		}
		var obs [2]observed
		var rw sync.WaitGroup
		for j, r := range c.others(w) {
			rw.Go(func() { obs[j] = awaitChange(r, keyOf(ch.key), ch.answered, shows, old) })
		}
		rw.Wait()
		for j, o := range obs {
			if o.err != nil {
				t.Fatalf("change %d (%s) on %s: %v", i, kind, w.name, o.err)
			}
			if o.late > 0 {
				t.Errorf("change %d (%s) on %s: %s showed the old state %d times more than %v after the answer", i, kind, w.name, c.others(w)[j].name, o.late, staleWindow)
			}
			lags[kind] = append(lags[kind], o.lag)
			lags["all"] = append(lags["all"], o.lag)
		}
	}
	elapsed := time.Since(started)
	close(stop)
	wg.Wait()

	under := "no other load"
	if load {
		under = fmt.Sprintf("%d load workers", workers)
	}
	for _, kind := range []string{"all", "delete", "sys_admin"} {
		l := lags[kind]
		slices.Sort(l)
		t.Logf("propagation, %s, %s (%d samples: write answered on one node -> end of the first decision showing it on another): p50 %v, p99 %v, max %v",
			kind, under, len(l), pct(l, 50), pct(l, 99), l[len(l)-1])
	}
	t.Logf("%d changes in %v (503 store unavailable answers waited out by the test so far: %d); load average before and after (the machine is shared): %s, %s", n, elapsed.Round(time.Millisecond), unavailable.Load(), loadBefore, loadAvg())
	if !load {
		return
	}
	s := staleAllows(c, log, records)
	t.Logf("load: %d decisions by %d workers over %v (%.0f/s), %d transport errors, %d answered 503 store unavailable",
		len(records), workers, elapsed.Round(time.Millisecond), float64(len(records))/elapsed.Seconds(), s.errors, s.unavailable)
	t.Logf("stale allows under load: %d on the writing node after its answer; on the other nodes %d within %v of the answer (latest %v after it), %d later",
		s.writer, s.within, staleWindow, s.latest, s.late)
	if s.writer > 0 || s.late > 0 || !writerOK {
		t.Errorf("stale allows: %d on the writing node, %d on another node more than %v after the answer; want none", s.writer, s.late, staleWindow)
	}
	if s.errors > 0 {
		t.Errorf("%d load decisions failed (first: %v)", s.errors, s.firstErr)
	}
	for i, nd := range c.nodes {
		after := nd.cacheHits(t)
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(after)) {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, after[name]-hits[i][name]))
		}
		t.Logf("cache hits on %s during the test: %v", nd.name, parts)
	}
}

// staleCount is the outcome of staleAllows.
type staleCount struct {
	writer, within, late, errors int
	unavailable                  int // 503 denies (store unavailable): no stale allow, but reported
	latest                       time.Duration
	firstErr                     error
}

// staleAllows counts the load's decisions that allowed more than the latest answered change
// permitted: an allow of a key whose delete had been answered before the decision started, or
// an admin answer for the toggled user after a demotion had been answered and before the next
// promotion was sent (a promotion in flight may legitimately show up early).
func staleAllows(c *cluster, log []change, records []record) staleCount {
	var s staleCount
	deleted := map[int]change{}
	var toggles []change
	for _, ch := range log {
		if ch.key >= 0 {
			deleted[ch.key] = ch
		} else {
			toggles = append(toggles, ch)
		}
	}
	count := func(r record, ch change) {
		after := r.start.Sub(ch.answered)
		switch {
		case r.node == ch.writer:
			s.writer++
		case after > staleWindow:
			s.late++
		default:
			s.within++
		}
		s.latest = max(s.latest, after)
	}
	for _, r := range records {
		if r.err != nil {
			s.errors++
			if s.firstErr == nil {
				s.firstErr = r.err
			}
			continue
		}
		if r.d.Status == 503 {
			s.unavailable++
		}
		if !r.d.Allow {
			continue
		}
		if r.key >= 0 {
			if ch, ok := deleted[r.key]; ok && r.start.After(ch.answered) {
				count(r, ch)
			}
			continue
		}
		if r.d.Permissions != "admin" {
			continue
		}
		// The last toggle answered before the decision started.
		j := -1
		for i, ch := range toggles {
			if ch.answered.Before(r.start) {
				j = i
			}
		}
		if j < 0 || toggles[j].sysAdmin {
			continue
		}
		if j+1 < len(toggles) && toggles[j+1].sent.Before(r.end) {
			continue // the next promotion was on its way
		}
		count(r, toggles[j])
	}
	return s
}

// pct is the p-th percentile of sorted.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)*p/100, len(sorted)-1)]
}

// loadAvg is the first three fields of /proc/loadavg, to read the figures against.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

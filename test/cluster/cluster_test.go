// Package cluster tests cluster mode (docs/cluster.md) with real processes, as docs/cluster.md
// runs them: a three-member etcd on loopback (Debian's /usr/bin/etcd) and three
// `keyauthz serve --store etcd://...` nodes, each with a data folder of its own. It checks that
// a change made on any node reaches the others, measures how fast (propagation) and counts
// stale allows under load, and breaks things: the etcd leader killed, a second member stopped
// (no quorum), both started again, a keyauthz node killed with SIGKILL in the middle of writing.
//
// The short form runs in `go test` (200 changes); `make cluster` runs the long form
// (KEYAUTHZ_CLUSTER_CHANGES=2000). The figures are written to the test output (t.Logf).
package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

var binary string // the keyauthz binary, built once by TestMain

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinary(m, "keyauthz-cluster-", &binary)) }

// staleWindow is how long after a write's answer another node may still serve the old state
// (docs/cluster.md: a change reaches every node within 1 s). The node that wrote may not
// serve it at all once it has answered.
const staleWindow = time.Second

// staleGrace is the --stale-grace of node C: how long it may serve cached decisions it cannot
// confirm (etcd without quorum). Long enough that the test's checks fall well inside it.
const staleGrace = "10m"

// changes is how many changes the propagation test makes: 200 in the short form, more with
// KEYAUTHZ_CLUSTER_CHANGES (the long form of `make cluster`).
func changes(t *testing.T) int {
	v := os.Getenv("KEYAUTHZ_CLUSTER_CHANGES")
	if v == "" {
		return 200
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		t.Fatalf("KEYAUTHZ_CLUSTER_CHANGES=%q: want a whole number ≥ 2", v)
	}
	return n
}

// cluster is what every subtest shares: the etcd members, the three nodes, the admin key.
type cluster struct {
	etcd     *etcdCluster
	nodes    []*node // A, B, C
	admin    string
	domainID string
}

func TestCluster(t *testing.T) {
	etcd := startEtcdCluster(t)
	store := etcd.endpoints()
	// A and B run with the default --stale-grace (0: a cached allow that cannot be confirmed
	// is not served); C with a grace, so that it decides for the keys it has cached while etcd
	// has no quorum.
	nodes := []*node{
		{name: "A", args: []string{"--store", store}},
		{name: "B", args: []string{"--store", store}},
		{name: "C", args: []string{"--store", store, "--stale-grace", staleGrace}},
	}
	startNodes(t, nodes...)
	c := &cluster{etcd: etcd, nodes: nodes}
	c.bootstrapOnce(t)

	for _, tc := range []struct {
		name string
		run  func(*cluster, *testing.T)
	}{
		{"create on A, used on B and C", (*cluster).createOnA},
		{"delete on C, refused on A and B", (*cluster).deleteOnC},
		{"demote on B, narrowed on A and C", (*cluster).demoteOnB},
		{"propagation", func(c *cluster, t *testing.T) { c.propagation(t, false) }},
		{"propagation and stale allows under load", func(c *cluster, t *testing.T) { c.propagation(t, true) }},
		{"etcd faults: one member stopped, two, both back", (*cluster).etcdFaults},
		{"kill -9 a node mid-write", (*cluster).killNode},
	} {
		// The subtests share the cluster, and one that fails with t.Errorf leaves it whole
		// (every member and node running), so the later ones still run; after a t.Fatal in
		// the middle of a fault they may fail too: read the first failure first.
		t.Run(tc.name, func(t *testing.T) { tc.run(c, t) })
	}
	t.Logf("answers 503 store unavailable that the test's helpers waited out (etcd slow to answer; the fault checks count their own): %d", unavailable.Load())
}

// bootstrapOnce checks that the nodes, started at the same moment, bootstrapped the cluster
// exactly once, and takes the admin key from the one that did.
func (c *cluster) bootstrapOnce(t *testing.T) {
	writers := 0
	for _, n := range c.nodes {
		key, err := os.ReadFile(filepath.Join(n.dataDir, "bootstrap.key"))
		switch {
		case err == nil:
			writers++
			c.admin = strings.TrimSpace(string(key))
		case !os.IsNotExist(err):
			t.Fatal(err)
		case !strings.Contains(n.Stderr.String(), "already bootstrapped"):
			t.Errorf("node %s wrote no bootstrap key and did not log that the cluster was already bootstrapped:\n%s", n.name, n.Stderr)
		}
	}
	if writers != 1 {
		t.Fatalf("%d nodes wrote bootstrap.key, want exactly 1", writers)
	}
	var domains []struct {
		ID string `json:"id"`
	}
	for _, n := range c.nodes {
		if st, raw := n.call(t, "GET", "/api/engine/v2/domains", c.admin, nil, &domains); st != 200 || len(domains) != 1 {
			t.Fatalf("domains on %s: %d %s (want exactly one: bootstrapped once)", n.name, st, raw)
		}
	}
	c.domainID = domains[0].ID
}

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	panic("no node " + name)
}

// others returns the nodes but w.
func (c *cluster) others(w *node) []*node {
	var out []*node
	for _, n := range c.nodes {
		if n != w {
			out = append(out, n)
		}
	}
	return out
}

// createOnA: a key created on A is allowed on B and C at their first request (they have
// never seen its id, so nothing cached can hide it).
func (c *cluster) createOnA(t *testing.T) {
	a := c.node("A")
	user := createUser(t, a, c.admin, c.domainID, "panel", false)
	k := createKey(t, a, c.admin, user, "panel", "user")
	for _, n := range c.others(a) {
		if d := n.decide(t, k.Key); !d.Allow {
			t.Errorf("key created on A refused on %s at its first request: %v", n.name, d)
		}
	}
}

// deleteOnC: a key that A and B have just allowed (and may have cached) is refused by C as
// soon as C has answered the delete, and by A and B within staleWindow.
func (c *cluster) deleteOnC(t *testing.T) {
	a, cc := c.node("A"), c.node("C")
	user := createUser(t, a, c.admin, c.domainID, "kiosk", false)
	k := createKey(t, a, c.admin, user, "kiosk", "user")
	for _, n := range c.nodes {
		for range 2 { // twice: the second answer may come from a cache
			if d := n.decide(t, k.Key); !d.Allow {
				t.Fatalf("new key refused on %s: %v", n.name, d)
			}
		}
	}
	deleteKey(t, cc, c.admin, k.ID)
	answered := time.Now()
	if d := cc.decide(t, k.Key); !refused(d) {
		t.Errorf("C allowed the key it had deleted, after answering the delete: %v", d)
	}
	for _, n := range c.others(cc) {
		o := awaitChange(n, k.Key, answered, refused, allows)
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.late > 0 {
			t.Errorf("%s allowed the key deleted on C %d times more than %v after the delete answered", n.name, o.late, staleWindow)
		}
		t.Logf("key deleted on C: first refusal on %s %v after C answered (%d allows after the answer)", n.name, o.lag, o.stale)
	}
}

// demoteOnB: an admin key whose user is demoted on B is narrowed to user on B at once, and on
// A and C within staleWindow.
func (c *cluster) demoteOnB(t *testing.T) {
	a, b := c.node("A"), c.node("B")
	user := createUser(t, a, c.admin, c.domainID, "operator", true)
	k := createKey(t, a, c.admin, user, "operator", "admin")
	for _, n := range c.nodes {
		for range 2 {
			if d := n.decide(t, k.Key); !d.Allow || d.Permissions != "admin" {
				t.Fatalf("admin key on %s before the demotion: %v", n.name, d)
			}
		}
	}
	setSysAdmin(t, b, c.admin, user, false)
	answered := time.Now()
	if d := b.decide(t, k.Key); !hasPermissions("user")(d) {
		t.Errorf("B still answered %v for the key of the user it had demoted", d)
	}
	for _, n := range c.others(b) {
		o := awaitChange(n, k.Key, answered, hasPermissions("user"), hasPermissions("admin"))
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.late > 0 {
			t.Errorf("%s answered admin for the user demoted on B %d times more than %v after the demotion answered", n.name, o.late, staleWindow)
		}
		t.Logf("user demoted on B: first narrowed answer on %s %v after B answered (%d old answers after it)", n.name, o.lag, o.stale)
	}
}

// observed is what awaitChange saw on one node.
type observed struct {
	lag   time.Duration // from the write's answer to the end of the first decision showing it
	stale int           // decisions started after the answer that still showed the old state
	late  int           // of those, the ones started more than staleWindow after the answer
	err   error
}

// awaitChange asks n for key's decision until shows says it shows the change answered at
// answered. A decision that shows the state from before (old) is stale; any other (a 503
// while etcd is slow to answer) is counted in unavailable and asked again. It gives up after
// 30s (an error: the change never arrived).
func awaitChange(n *node, key string, answered time.Time, shows, old func(decision) bool) observed {
	var o observed
	for {
		start := time.Now()
		d, err := n.tryDecide(key)
		end := time.Now()
		if err != nil {
			o.err = err
			return o
		}
		switch {
		case shows(d):
			o.lag = max(end.Sub(answered), 0)
			return o
		case old(d):
			o.stale++
			if start.Sub(answered) > staleWindow {
				o.late++
			}
		default:
			unavailable.Add(1)
		}
		if start.Sub(answered) > 30*time.Second {
			o.err = fmt.Errorf("%s: the change answered %v ago has not arrived (last decision %v)", n.name, start.Sub(answered), d)
			return o
		}
	}
}

// refused and allowed are the states of a key before and after its delete.
func refused(d decision) bool { return !d.Allow && d.Status == 401 }
func allows(d decision) bool  { return d.Allow }

// hasPermissions returns a test of a decision: allowed with permissions p.
func hasPermissions(p string) func(decision) bool {
	return func(d decision) bool { return d.Allow && d.Permissions == p }
}

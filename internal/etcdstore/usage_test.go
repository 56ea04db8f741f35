package etcdstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestUsageNoStorm: three nodes flush last_used_at for the same keys, each once per flush
// interval, at the same moment (the worst case; serve staggers the nodes' flushes). The
// store writes each key at most once per resolution across the cluster, a conflict with
// another node costs a retry of that key only, and every key ends with its latest use.
// The writes and the time per round are logged (docs/cluster.md#last_used_at).
func TestUsageNoStorm(t *testing.T) {
	const (
		nodes    = 3
		nKeys    = 300
		rounds   = 4
		interval = 10 // seconds: the flush interval serve uses
	)
	m := startEtcd(t)
	stores := make([]*etcdstore.Store, nodes)
	for i := range stores {
		stores[i] = open(t, m.client(t), etcdstore.WithPrefix("/usage/"), etcdstore.WithUseResolution(interval*time.Second))
	}
	ctx := t.Context()
	s := stores[0]
	d := &keys.Domain{Name: "Main", Domain: "example.com"}
	must(t, s.CreateDomain(ctx, d))
	u := &keys.User{AuthorityID: d.ID, Name: "U", Email: "u@example.com"}
	must(t, s.CreateUser(ctx, u))
	ids := make([]string, nKeys)
	for i := range ids {
		k := &keys.APIKey{Name: fmt.Sprint("k", i), UserID: u.ID}
		_, err := s.CreateKey(ctx, k)
		must(t, err)
		ids[i] = k.ID
	}
	cli := m.client(t)
	base := time.Now().Unix()
	var latest int64
	for r := range rounds {
		before := revision(t, cli)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, nodes)
		for n, st := range stores {
			// Each node saw every key used within the interval, at times a few seconds apart.
			at := base + int64(r*interval+n*3)
			latest = max(latest, at)
			uses := make(map[string]int64, nKeys)
			for _, id := range ids {
				uses[id] = at
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[n] = st.RecordUse(ctx, uses)
			}()
		}
		wg.Wait()
		took := time.Since(start)
		for n, err := range errs {
			if err != nil {
				t.Errorf("round %d, node %d: %v", r, n, err)
			}
		}
		after := revision(t, cli)
		puts := countKeyPuts(t, cli, "/usage/", before, after)
		t.Logf("round %d: %d keys used on %d nodes: %d key writes in %d transactions, %v (%.0f writes per key per interval)",
			r, nKeys, nodes, puts, after-before, took.Round(time.Millisecond), float64(puts)/nKeys)
		if puts > nKeys {
			t.Errorf("round %d: %d key writes, want at most one per key (%d)", r, puts, nKeys)
		}
	}
	// The first round's value of every key is within one resolution of its latest use.
	got, _, err := s.ListKeys(ctx, keys.KeyFilter{Limit: nKeys})
	must(t, err)
	for _, k := range got {
		if k.LastUsedAt == nil || *k.LastUsedAt < latest-interval || *k.LastUsedAt > latest {
			t.Fatalf("key %s: last_used_at %v, want within %ds before %d", k.ID, k.LastUsedAt, interval, latest)
		}
	}
}

// TestUsageExact: without a resolution every later use is written, as on Badger, and a use
// never moves last_used_at back.
func TestUsageExact(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/exact/"))
	ctx := t.Context()
	_, _, id := fixture(t, s)
	for _, step := range []struct{ use, want int64 }{{100, 100}, {101, 101}, {90, 101}, {105, 105}} {
		must(t, s.RecordUse(ctx, map[string]int64{id: step.use, "00000000000000000000000000000000": step.use}))
		k, err := s.GetKey(ctx, id)
		must(t, err)
		if k.LastUsedAt == nil || *k.LastUsedAt != step.want {
			t.Fatalf("after a use at %d: last_used_at %v, want %d", step.use, k.LastUsedAt, step.want)
		}
	}
}

func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "rev", clientv3.WithCountOnly())
	must(t, err)
	return resp.Header.Revision
}

// countKeyPuts counts the writes of key records under prefix in revisions (from, to].
func countKeyPuts(t *testing.T, cli *clientv3.Client, prefix string, from, to int64) int {
	t.Helper()
	if to <= from {
		return 0
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n := 0
	for resp := range cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from+1)) {
		must(t, resp.Err())
		// A response holds every event of the revisions it covers.
		done := false
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision > to {
				return n
			}
			if ev.Type == mvccpb.PUT && strings.HasPrefix(string(ev.Kv.Key), prefix+"k/") {
				n++
			}
			done = done || ev.Kv.ModRevision == to
		}
		if done {
			return n
		}
	}
	t.Fatalf("watch ended before revision %d", to)
	return n
}

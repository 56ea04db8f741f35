package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// etcdBinary is Debian's etcd-server (apt-get install etcd-server; .ci/run installs it).
const etcdBinary = "/usr/bin/etcd"

// etcdVsBadger (-mode etcd) measures what a decision costs a node on etcd (cluster mode,
// docs/cluster.md) against a node on Badger: the same fixture in both stores, the same
// binary, bundle and requests, the two nodes driven in turn (A B A B) in one run. Three
// kinds of decision:
//   - hit: one request again and again (the decision cache answers);
//   - key hit: a new path every request with 50 keys cycled (the key cache answers, the policy
//     is evaluated);
//   - miss: a key never seen before every request, one connection (a store read, a key
//     verification and an evaluation): the cost a store adds.
func (h *harness) etcdVsBadger(ctx context.Context) (map[string]any, error) {
	n := cmpOr(h.cfg.keys, 1000)
	rounds := max(h.cfg.rounds, 1)
	h.printf("== etcd against Badger: %d keys in each store, %d conns, %s per node and workload in %d rounds\n", n, h.cfg.conns, h.cfg.duration, rounds)
	if _, err := os.Stat(etcdBinary); err != nil {
		return nil, fmt.Errorf("%s not found: install Debian's etcd-server (apt-get install etcd-server)", etcdBinary)
	}
	etcd, endpoint, err := startEtcd(ctx, filepath.Join(h.work, "etcd"))
	if err != nil {
		return nil, err
	}
	defer etcd.stop()

	bdir := filepath.Join(h.work, "data-badger")
	bf, err := makeStore(ctx, bdir, n, n)
	if err != nil {
		return nil, fmt.Errorf("badger store: %w", err)
	}
	start := time.Now()
	ef, err := makeEtcdStore(ctx, endpoint, n)
	if err != nil {
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	h.printf("stores filled: Badger by bulk import in %.1fs, etcd by %d CreateKey calls in %.1fs\n", bf.importTime.Seconds(), n-2, time.Since(start).Seconds())

	extra := strings.Fields(h.cfg.kaArgs)
	bn, err := startKeyauthz(h.keyauthz, bdir, h.bundle, extra)
	if err != nil {
		return nil, err
	}
	defer bn.stop()
	en, err := startKeyauthz(h.keyauthz, filepath.Join(h.work, "data-etcd"), h.bundle, append([]string{"--store", "etcd://" + endpoint}, extra...))
	if err != nil {
		return nil, err
	}
	defer en.stop()

	type side struct {
		name string
		p    *proc
		f    *fixture
		miss [][]byte // one request per key never used before, split between the rounds
	}
	sides := []*side{{name: "badger", p: bn, f: bf}, {name: "etcd", p: en, f: ef}}
	for _, s := range sides {
		// The first distinctKeys sampled keys serve the key-hit workload; the others, once
		// each, the misses.
		if len(s.f.sample) <= distinctKeys {
			return nil, fmt.Errorf("-keys %d: want more than %d", n, distinctKeys+2)
		}
		miss := &fixture{domain: s.f.domain, sample: s.f.sample[distinctKeys:]}
		s.miss = miss.sampleRequests()
		s.f.sample, s.f.sampleIDs = s.f.sample[:distinctKeys], s.f.sampleIDs[:distinctKeys]
		// Both nodes decide the mix as expected before anything is measured.
		t := &target{name: s.name, url: s.p.url + "/v1/data/keyauthz/decision", client: newClient(1)}
		for _, r := range s.f.mix() {
			got, err := t.ask(ctx, r.kaBody)
			if err != nil {
				return nil, err
			}
			if got.Allow != r.WantAllow {
				return nil, fmt.Errorf("%s node: %s: %s, want allow=%v", s.name, r.Name, show(got), r.WantAllow)
			}
		}
	}

	out := map[string]any{
		"keys": n, "conns": h.cfg.conns, "duration_per_node": h.cfg.duration.String(), "rounds": rounds,
		"endpoint": "POST /v1/data/keyauthz/decision", "keyauthz_args": h.cfg.kaArgs,
		"etcd": "one member on loopback (" + etcdBinary + ")",
	}
	var table []string
	per := h.cfg.duration / time.Duration(rounds)
	for _, kind := range []string{"hit", "key hit", "miss"} {
		total := map[string]*stats{}
		for round := 1; round <= rounds; round++ {
			for _, s := range sides {
				url := s.p.url + "/v1/data/keyauthz/decision"
				var st *stats
				switch kind {
				case "hit", "key hit":
					w := s.f.repeated()
					if kind == "key hit" {
						w = s.f.distinct()
					}
					t := &target{name: s.name, url: url, client: newClient(h.cfg.conns), body: w.ka}
					if round == 1 {
						drive(ctx, t, h.cfg.conns, h.cfg.warmup)
					}
					st = drive(ctx, t, h.cfg.conns, per)
				case "miss":
					part := len(s.miss) / rounds
					t := &target{name: s.name, url: url, client: newClient(1), bodies: s.miss[(round-1)*part : round*part]}
					st = driveOnce(ctx, t)
				}
				h.tally(total, fmt.Sprintf("round %d %-8s %-7s", round, kind, s.name), s.name, st)
			}
		}
		b, e := total["badger"], total["etcd"]
		if b.Errors+e.Errors > 0 {
			return nil, fmt.Errorf("%s: %d badger and %d etcd requests failed (%s)", kind, b.Errors, e.Errors, cmpOrS(b.firstError, e.firstError))
		}
		conns := h.cfg.conns
		if kind == "miss" {
			conns = 1
		}
		out[kind] = map[string]any{"badger": b, "etcd": e, "conns": conns,
			"p50_etcd_minus_badger_us": round1(e.P50Micros - b.P50Micros)}
		table = append(table, fmt.Sprintf("| %s (%d conn%s) | %.1fk/s, p50 %.0f µs, p99 %.0f µs | %.1fk/s, p50 %.0f µs, p99 %.0f µs | %+.0f µs |",
			kind, conns, map[bool]string{true: "", false: "s"}[conns == 1],
			b.PerSecond/1000, b.P50Micros, b.P99Micros, e.PerSecond/1000, e.P50Micros, e.P99Micros, e.P50Micros-b.P50Micros))
	}
	h.printf("\n| decision | node on Badger | node on etcd | p50 etcd − Badger |\n|---|---|---|---|\n")
	for _, row := range table {
		h.printf("%s\n", row)
	}
	h.printf("hit: one request again (decision cache); key hit: a new path each time, 50 keys cycled (key cache, policy evaluated); miss: a key never used before each time, one connection (store read, verification, evaluation)\n")
	return out, nil
}

// startEtcd starts one etcd member on loopback with its data in dir and waits until it
// answers; it returns the process and the client address.
func startEtcd(ctx context.Context, dir string) (*proc, string, error) {
	client, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	peer, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p := &proc{name: "etcd", url: "http://" + client, stderr: &tailBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(etcdBinary, "--name", "m0", "--data-dir", dir,
		"--listen-client-urls", p.url, "--advertise-client-urls", p.url,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "m0=http://"+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	cli, err := dialEtcd(client)
	if err != nil {
		p.stop()
		return nil, "", err
	}
	defer cli.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-p.done:
			return nil, "", fmt.Errorf("etcd exited: %s", p.stderr)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "ready")
		cancel()
		if err == nil {
			return p, client, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("etcd not ready within 30s: %v: %s", err, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialEtcd(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// makeEtcdStore fills the etcd at endpoint as makeStore fills a Badger folder: the seed, then
// n-2 fleet keys (systems.read), here through CreateKey from 16 goroutines (etcd has no bulk
// import), all of whose plaintexts are kept in sample.
func makeEtcdStore(ctx context.Context, endpoint string, n int) (*fixture, error) {
	cli, err := dialEtcd(endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	s, err := etcdstore.Open(ctx, cli)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	f, err := seed(ctx, s)
	if err != nil {
		return nil, err
	}
	bulk := max(n-2, 0)
	f.sample, f.sampleIDs = make([]string, bulk), make([]string, bulk)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan int)
	)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				k := &keys.APIKey{Name: fmt.Sprintf("fleet-%07d", i), UserID: f.fleetUser.ID, Scopes: []string{"systems.read"}}
				p, err := s.CreateKey(ctx, k)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				f.sample[i], f.sampleIDs[i] = string(p), k.ID
			}
		})
	}
	for i := range bulk {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d keys not created, first: %w", len(errs), errs[0])
	}
	return f, nil
}

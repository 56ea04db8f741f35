// Command load is keyauthz's load harness (bench/README.md#load-harness). It builds the policy
// bundle, starts keyauthz (the built binary) on a loopback port with a fresh data folder, starts
// `opa run --server` on the same bundle, and drives both decision endpoints with the same
// request mix, alternating A B A B at the same concurrency. With -mode million it loads
// 1,000,000 keys and reports keyauthz's memory, start-up time and decision latency against a
// 1,000-key store. With -mode etcd it measures a node on etcd (cluster mode) against one on
// Badger, cache hits and misses (etcd.go).
//
//	go run ./bench/load [-duration 10s] [-conns 16] [-keys 1000] [-out bench/out/result.json]
//	go run ./bench/load -mode million [-keys 1000000]
//	go run ./bench/load -mode etcd [-keys 1000]     # a node on etcd against one on Badger
//	go run ./bench/load -smoke
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type config struct {
	mode      string
	duration  time.Duration
	warmup    time.Duration
	conns     int
	keys      int
	rounds    int
	out       string
	smoke     bool
	keep      bool
	kaArgs    string
	workloads string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.mode, "mode", "compare", "compare (keyauthz against opa run --server), million (1M keys: memory, start-up, latency) etcd (a node on etcd against one on Badger: cache hit and miss) or limits (keys with an IP allow-list and a rate limit against keys without)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "load time per server (split into -rounds, alternating A B A B)")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured load on each server before the first round")
	fs.IntVar(&cfg.conns, "conns", 16, "concurrent keep-alive connections (one worker each)")
	fs.IntVar(&cfg.keys, "keys", 0, "keys in the store (default 1000; 1000000 with -mode million)")
	fs.IntVar(&cfg.rounds, "rounds", 2, "rounds per server")
	fs.StringVar(&cfg.out, "out", "", "JSON result file (default bench/out/<mode>.json, bench/out/smoke.json with -smoke)")
	fs.BoolVar(&cfg.smoke, "smoke", false, "a few seconds with tiny sizes, for CI: every mode, no figure asserted")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the work folder (binaries, bundle, data)")
	fs.StringVar(&cfg.workloads, "workloads", "repeated,distinct", "compare workloads, comma-separated: repeated (one request again), distinct (a new system id every request, 50 keys cycled), mix (11 requests cycled)")
	serveFloorAddr := fs.String("serve-floor", "", "internal: serve the HTTP floor on this address (the harness starts it)")
	fs.StringVar(&cfg.kaArgs, "keyauthz-args", "", "extra flags for keyauthz serve, space-separated (e.g. \"--decision-cache-size 0\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveFloorAddr != "" {
		return serveFloor(*serveFloorAddr, stdout)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if cfg.smoke {
		cfg.duration, cfg.warmup, cfg.conns, cfg.rounds = time.Second, 200*time.Millisecond, 4, 1
		if cfg.keys == 0 {
			cfg.keys = 100
		}
	}
	if cfg.out == "" {
		name := cfg.mode
		if cfg.smoke {
			name = "smoke"
		}
		cfg.out = filepath.Join(root, "bench", "out", name+".json")
	}
	work, err := os.MkdirTemp("", "keyauthz-load-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintln(stdout, "work folder:", work)
	} else {
		defer os.RemoveAll(work)
	}
	fmt.Fprintln(stdout, "== building keyauthz and opa, then the bundle")
	h := &harness{cfg: cfg, root: root, work: work, out: stdout}
	if h.keyauthz, h.opa, err = buildBinaries(ctx, root, work); err != nil {
		return err
	}
	h.bundle = filepath.Join(work, "bundle.tar.gz")
	if err := buildBundle(ctx, h.keyauthz, h.bundle); err != nil {
		return err
	}
	report := map[string]any{"machine": machine(), "time": time.Now().UTC().Format(time.RFC3339)}
	switch {
	case cfg.smoke:
		if report["compare"], err = h.compare(ctx); err != nil {
			return err
		}
		if report["million"], err = h.million(ctx, 1000); err != nil {
			return err
		}
		if report["etcd"], err = h.etcdVsBadger(ctx); err != nil {
			return err
		}
		report["limits"], err = h.limitsOnOff(ctx)
	case cfg.mode == "compare":
		report["compare"], err = h.compare(ctx)
	case cfg.mode == "million":
		report["million"], err = h.million(ctx, cmpOr(cfg.keys, 1_000_000))
	case cfg.mode == "etcd":
		report["etcd"], err = h.etcdVsBadger(ctx)
	case cfg.mode == "limits":
		report["limits"], err = h.limitsOnOff(ctx)
	default:
		err = fmt.Errorf("-mode %q: want compare, million, etcd or limits", cfg.mode)
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(report, "", "  ")
	if err := os.WriteFile(cfg.out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "wrote", cfg.out)
	return nil
}

type harness struct {
	cfg                   config
	root, work            string
	keyauthz, opa, bundle string
	out                   io.Writer
}

func (h *harness) printf(format string, a ...any) { fmt.Fprintf(h.out, format, a...) }

// compare drives keyauthz, opa run --server and the HTTP floor with each workload, A B C A B C.
func (h *harness) compare(ctx context.Context) (map[string]any, error) {
	n := cmpOr(h.cfg.keys, 1000)
	h.printf("== compare: %d keys, %d conns, %s per server and workload in %d rounds\n", n, h.cfg.conns, h.cfg.duration, h.cfg.rounds)
	dir := filepath.Join(h.work, "data-compare")
	f, err := makeStore(ctx, dir, n, min(distinctKeys, max(n-2, 1)))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	ka, err := startKeyauthz(h.keyauthz, dir, h.bundle, strings.Fields(h.cfg.kaArgs))
	if err != nil {
		return nil, err
	}
	defer ka.stop()
	op, err := startOPA(h.opa, h.bundle)
	if err != nil {
		return nil, err
	}
	defer op.stop()
	fl, err := startFloor()
	if err != nil {
		return nil, err
	}
	defer fl.stop()

	byName := map[string]func() workload{"repeated": f.repeated, "distinct": f.distinct, "mix": f.mixWorkload}
	out := map[string]any{
		"keys": n, "conns": h.cfg.conns, "duration_per_server": h.cfg.duration.String(), "rounds": h.cfg.rounds,
		"endpoint": "POST /v1/data/keyauthz/decision", "keyauthz_args": h.cfg.kaArgs,
		"note": "opa run --server cannot look keys up: its requests carry the already-resolved domain, key and user as policy input; keyauthz resolves them from the x-api-key header (key and decision caches on unless keyauthz_args turns them off). The floor is a trivial Go JSON server that judges nothing.",
	}
	var table []string
	for _, name := range strings.Split(h.cfg.workloads, ",") {
		mk, ok := byName[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("-workloads: unknown workload %q (want repeated, distinct or mix)", name)
		}
		w := mk()
		res, row, err := h.runWorkload(ctx, w, ka, op, fl)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.name, err)
		}
		out[w.name] = res
		table = append(table, row)
	}
	rss, _ := ka.rssBytes()
	out["keyauthz_rss_mb"] = round1(float64(rss) / (1 << 20))
	h.printf("\n| workload | keyauthz | opa | floor | keyauthz / opa | keyauthz / floor | p99 keyauthz / floor |\n|---|---|---|---|---|---|---|\n")
	for _, row := range table {
		h.printf("%s\n", row)
	}
	h.printf("targets: distinct ≥ 3x opa; repeated ≥ 0.8x floor; p99 ≤ 1.5x the floor's\n")
	h.printf("note: opa run --server cannot look keys up, so its requests carry the already-resolved domain, key and user as policy input; keyauthz resolves them from the x-api-key header.\n")
	h.printf("keyauthz RSS after the run: %.1f MB\n", float64(rss)/(1<<20))
	return out, nil
}

// distinctKeys is how many fleet keys the distinct workload cycles.
const distinctKeys = 50

// runWorkload checks that keyauthz and opa decide w's check requests alike and as wanted, warms
// the three servers up, drives them in turn for -rounds rounds and returns the figures and a
// Markdown table row.
func (h *harness) runWorkload(ctx context.Context, w workload, ka, op, fl *proc) (map[string]any, string, error) {
	h.printf("\n== workload %s\n", w.name)
	targets := []*target{
		{name: "keyauthz", url: ka.url + "/v1/data/keyauthz/decision", client: newClient(h.cfg.conns), body: w.ka},
		{name: "opa", url: op.url + "/v1/data/keyauthz/decision", client: newClient(h.cfg.conns), body: w.opa},
		{name: "floor", url: fl.url + "/v1/data/keyauthz/decision", client: newClient(h.cfg.conns), body: w.opa},
	}
	var mismatches []string
	for _, r := range w.check {
		a, errA := targets[0].ask(ctx, r.kaBody)
		b, errB := targets[1].ask(ctx, r.opaBody)
		if err := errors.Join(errA, errB); err != nil {
			return nil, "", err
		}
		h.printf("%-26s keyauthz %-8s opa %-8s\n", r.Name, show(a), show(b))
		if a != b || a.Allow != r.WantAllow {
			mismatches = append(mismatches, r.Name)
		}
	}
	if len(mismatches) > 0 {
		return nil, "", fmt.Errorf("the servers disagree, or differ from the expected allow, on: %s", strings.Join(mismatches, "; "))
	}
	for _, t := range targets {
		drive(ctx, t, h.cfg.conns, h.cfg.warmup)
	}
	total := map[string]*stats{}
	per := h.cfg.duration / time.Duration(max(h.cfg.rounds, 1))
	for round := 1; round <= max(h.cfg.rounds, 1); round++ {
		for _, t := range targets {
			s := drive(ctx, t, h.cfg.conns, per)
			h.printf("round %d %-9s %9.0f decisions/s  p50 %7.1f µs  p99 %8.1f µs  errors %d\n", round, t.name, s.PerSecond, s.P50Micros, s.P99Micros, s.Errors)
			if s.firstError != "" {
				h.printf("  first error: %s\n", s.firstError)
			}
			if total[t.name] == nil {
				total[t.name] = s
			} else {
				total[t.name].merge(s)
			}
		}
	}
	k, o, fl2 := total["keyauthz"], total["opa"], total["floor"]
	if k.Errors+o.Errors+fl2.Errors > 0 {
		return nil, "", fmt.Errorf("%d keyauthz, %d opa and %d floor requests failed", k.Errors, o.Errors, fl2.Errors)
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return round2(a / b)
	}
	res := map[string]any{
		"keyauthz": k, "opa": o, "floor": fl2,
		"keyauthz_per_opa":       ratio(k.PerSecond, o.PerSecond),
		"keyauthz_per_floor":     ratio(k.PerSecond, fl2.PerSecond),
		"p99_keyauthz_per_floor": ratio(k.P99Micros, fl2.P99Micros),
	}
	if w.name == "mix" {
		res["requests"] = w.check
	}
	cell := func(s *stats) string {
		return fmt.Sprintf("%.1fk/s (p50 %.0f µs, p99 %.0f µs)", s.PerSecond/1000, s.P50Micros, s.P99Micros)
	}
	row := fmt.Sprintf("| %s | %s | %s | %s | %.2f× | %.2f× | %.2f× |", w.name, cell(k), cell(o), cell(fl2),
		res["keyauthz_per_opa"], res["keyauthz_per_floor"], res["p99_keyauthz_per_floor"])
	return res, row, nil
}

// million loads n keys (bulk import, in this process), then starts keyauthz on that store and
// on a 1,000-key store and reports RSS, start-up time and decision latency for both.
func (h *harness) million(ctx context.Context, n int) (map[string]any, error) {
	const sampleN = 2000
	out := map[string]any{}
	sizes := []int{1000, n}
	if n == 1000 {
		sizes = []int{1000}
	}
	var p50s []float64
	for _, size := range sizes {
		h.printf("== %d keys\n", size)
		dir := filepath.Join(h.work, fmt.Sprintf("data-%d", size))
		f, err := makeStore(ctx, dir, size, sampleN)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		h.printf("bulk import: %d keys in %.1fs, then compaction in %.1fs\n", size-2, f.importTime.Seconds(), f.compactTime.Seconds())
		du := dirSize(dir)
		ka, err := startKeyauthz(h.keyauthz, dir, h.bundle, strings.Fields(h.cfg.kaArgs))
		if err != nil {
			return nil, err
		}
		res, err := h.latency(ctx, ka, f)
		ka.stop()
		if err != nil {
			return nil, err
		}
		res["store_mb"] = mb(du)
		res["import_seconds"] = round2(f.importTime.Seconds())
		res["compact_seconds"] = round2(f.compactTime.Seconds())
		out[fmt.Sprint(size)] = res
		p50s = append(p50s, res["mix_p50_us"].(float64))
	}
	if len(p50s) == 2 && p50s[0] > 0 {
		out["mix_p50_ratio"] = round2(p50s[1] / p50s[0])
		h.printf("decision p50 with %d keys / with 1,000 keys: %.2f (target ≤ 1.20)\n", n, out["mix_p50_ratio"])
	}
	return out, nil
}

// latency warms keyauthz up, then measures sequential decision latency (one connection) for
// the mix (cached) and for distinct sampled keys (key and decision caches miss: a store read
// and a policy evaluation each), and reads RSS.
func (h *harness) latency(ctx context.Context, ka *proc, f *fixture) (map[string]any, error) {
	client := newClient(1)
	mixT := &target{name: "keyauthz", url: ka.url + "/v1/data/keyauthz/decision", client: client}
	for _, r := range f.mix() {
		mixT.bodies = append(mixT.bodies, r.kaBody)
	}
	d := 3 * time.Second
	if h.cfg.smoke {
		d = 500 * time.Millisecond
	}
	drive(ctx, mixT, 1, d) // warm-up
	mem, err := ka.rss()
	if err != nil {
		return nil, err
	}
	rss := mem["VmRSS"]
	mix := drive(ctx, mixT, 1, d)
	sampleT := &target{name: "keyauthz", url: mixT.url, client: client, bodies: f.sampleRequests()}
	var sampled *stats
	if len(sampleT.bodies) > 0 {
		// Each sampled key once: stop after one pass (or d).
		sampled = driveOnce(ctx, sampleT)
	}
	h.printf("start-up %.2fs  RSS after warm-up %.1f MB (anon %.1f, file %.1f)  mix p50 %.1f µs p99 %.1f µs",
		ka.startup.Seconds(), mb(rss), mb(mem["RssAnon"]), mb(mem["RssFile"]), mix.P50Micros, mix.P99Micros)
	res := map[string]any{
		"startup_seconds": round2(ka.startup.Seconds()),
		"rss_mb":          mb(rss), "rss_anon_mb": mb(mem["RssAnon"]), "rss_file_mb": mb(mem["RssFile"]),
		"mix_p50_us": mix.P50Micros, "mix_p99_us": mix.P99Micros,
	}
	if sampled != nil {
		h.printf("  distinct keys (%d, uncached) p50 %.1f µs p99 %.1f µs", sampled.Decisions, sampled.P50Micros, sampled.P99Micros)
		res["distinct_keys"] = sampled.Decisions
		res["distinct_keys_p50_us"], res["distinct_keys_p99_us"] = sampled.P50Micros, sampled.P99Micros
	}
	h.printf("\n")
	if mix.Errors > 0 || sampled != nil && sampled.Errors > 0 {
		return nil, fmt.Errorf("requests failed: %s", cmpOrS(mix.firstError, sampled.firstError))
	}
	return res, nil
}

// driveOnce sends each body once, sequentially.
func driveOnce(ctx context.Context, t *target) *stats {
	s := &stats{}
	start := time.Now()
	for _, b := range t.bodies {
		t0 := time.Now()
		if err := t.send(ctx, b); err != nil {
			s.Errors++
			s.firstError = cmpOrS(s.firstError, err.Error())
			continue
		}
		s.latencies = append(s.latencies, time.Since(t0))
	}
	s.Seconds = time.Since(start).Seconds()
	s.finish()
	return s
}

func show(r result) string {
	if r.Allow {
		return "allow"
	}
	return fmt.Sprintf("deny %d", r.Status)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the keyauthz module")
	}
	return filepath.Dir(mod), nil
}

func machine() map[string]any {
	m := map[string]any{"nproc": runtime.NumCPU(), "goos": runtime.GOOS, "goarch": runtime.GOARCH, "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func mb(n int64) float64 { return round1(float64(n) / (1 << 20)) }

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func cmpOrS(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// tally prints one round's figures of one side after label and adds them to total[name].
func (h *harness) tally(total map[string]*stats, label, name string, st *stats) {
	h.printf("%s %9.0f decisions/s  p50 %7.1f µs  p99 %8.1f µs  errors %d\n", label, st.PerSecond, st.P50Micros, st.P99Micros, st.Errors)
	if st.firstError != "" {
		h.printf("  first error: %s\n", st.firstError)
	}
	if total[name] == nil {
		total[name] = st
	} else {
		total[name].merge(st)
	}
}

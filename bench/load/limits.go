package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// limitsOnOff (-mode limits) measures what per-key limits (docs/limits.md) cost a decision: two
// keyauthz nodes on the same fixture, the same binary, bundle and requests, one whose fleet keys
// carry an IP allow-list of three networks (the client's matched by the third, the most the
// policy checks before it matches) and a rate limit too high to refuse anything (so every allow
// takes a token), the other whose keys carry neither. Every request names its client address
// (input.client_ip), on both nodes alike. The nodes are driven in turn (A B A B) in one run:
//   - hit: one request again and again (the decision cache answers; the rate limit still
//     takes a token on every allow);
//   - key hit: a new path every request with 50 keys cycled (the policy is evaluated, the
//     allow-list judged).
func (h *harness) limitsOnOff(ctx context.Context) (map[string]any, error) {
	n := cmpOr(h.cfg.keys, 1000)
	rounds := max(h.cfg.rounds, 1)
	h.printf("== limits on against off: %d keys in each store, %d conns, %s per node and workload in %d rounds\n", n, h.cfg.conns, h.cfg.duration, rounds)
	limited := func(k *keys.APIKey) {
		k.AllowedCIDRs = []string{"192.0.2.0/24", "2001:db8::/32", "127.0.0.0/8"}
		k.RateLimit = &keys.RateLimit{Rate: keys.MaxRate, Burst: keys.MaxBurst}
	}
	sampleN := min(distinctKeys, max(n-2, 1))
	type side struct {
		name string
		p    *proc
		f    *fixture
	}
	var sides []*side
	for _, s := range []struct {
		name     string
		decorate func(*keys.APIKey)
	}{{"off", nil}, {"on", limited}} {
		dir := filepath.Join(h.work, "data-limits-"+s.name)
		f, err := makeStoreWith(ctx, dir, n, sampleN, s.decorate)
		if err != nil {
			return nil, fmt.Errorf("store (limits %s): %w", s.name, err)
		}
		p, err := startKeyauthz(h.keyauthz, dir, h.bundle, strings.Fields(h.cfg.kaArgs))
		if err != nil {
			return nil, err
		}
		defer p.stop()
		sides = append(sides, &side{name: s.name, p: p, f: f})
	}

	out := map[string]any{
		"keys": n, "conns": h.cfg.conns, "duration_per_node": h.cfg.duration.String(), "rounds": rounds,
		"endpoint": "POST /v1/data/keyauthz/decision", "keyauthz_args": h.cfg.kaArgs,
		"limits": "allowed_cidrs 192.0.2.0/24, 2001:db8::/32, 127.0.0.0/8 (matched by the third); rate_limit rate and burst 1e6",
	}
	var table []string
	per := h.cfg.duration / time.Duration(rounds)
	for _, kind := range []string{"hit", "key hit"} {
		total := map[string]*stats{}
		for round := 1; round <= rounds; round++ {
			for _, s := range sides {
				w := s.f.distinct()
				body := withClientIP(w.ka)
				if kind == "hit" {
					first := body(0)
					body = func(uint64) []byte { return first }
				}
				t := &target{name: s.name, url: s.p.url + "/v1/data/keyauthz/decision", client: newClient(h.cfg.conns), body: body}
				if round == 1 {
					// Both nodes allow the request before anything is measured.
					got, err := t.ask(ctx, body(0))
					if err != nil {
						return nil, err
					}
					if !got.Allow {
						return nil, fmt.Errorf("limits %s: %s, want an allow", s.name, show(got))
					}
					drive(ctx, t, h.cfg.conns, h.cfg.warmup)
				}
				st := drive(ctx, t, h.cfg.conns, per)
				h.tally(total, fmt.Sprintf("round %d %-8s limits %-4s", round, kind, s.name), s.name, st)
			}
		}
		off, on := total["off"], total["on"]
		if off.Errors+on.Errors > 0 {
			return nil, fmt.Errorf("%s: %d requests failed with limits off and %d with limits on (%s)", kind, off.Errors, on.Errors, cmpOrS(off.firstError, on.firstError))
		}
		out[kind] = map[string]any{"off": off, "on": on, "p50_on_minus_off_us": round1(on.P50Micros - off.P50Micros),
			"on_per_off": round2(on.PerSecond / off.PerSecond)}
		table = append(table, fmt.Sprintf("| %s | %.1fk/s, p50 %.0f µs, p99 %.0f µs | %.1fk/s, p50 %.0f µs, p99 %.0f µs | %.2f× | %+.0f µs |",
			kind, off.PerSecond/1000, off.P50Micros, off.P99Micros, on.PerSecond/1000, on.P50Micros, on.P99Micros,
			on.PerSecond/off.PerSecond, on.P50Micros-off.P50Micros))
	}
	h.printf("\n| decision | limits off | limits on | on / off (decisions/s) | p50 on − off |\n|---|---|---|---|---|\n")
	for _, row := range table {
		h.printf("%s\n", row)
	}
	h.printf("hit: one request again (decision cache; the rate limit takes a token); key hit: a new path each time, 50 keys cycled (policy evaluated, allow-list judged)\n")
	return out, nil
}

// withClientIP wraps a workload's keyauthz bodies ({"input":{...}}) so that each names the
// client address 127.0.0.1 (input.client_ip), which the limits mode's allow-lists match.
func withClientIP(body func(uint64) []byte) func(uint64) []byte {
	const prefix, with = `{"input":{`, `{"input":{"client_ip":"127.0.0.1",`
	return func(n uint64) []byte {
		b := body(n)
		if !bytes.HasPrefix(b, []byte(prefix)) {
			panic("limits: a request body that does not start with " + prefix)
		}
		return append([]byte(with), b[len(prefix):]...)
	}
}

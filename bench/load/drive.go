package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is one server under load: where its decision endpoint is and the bodies it gets:
// body(n) for the nth request when set, else bodies round-robin.
type target struct {
	name   string
	url    string // POST endpoint
	bodies [][]byte
	body   func(n uint64) []byte
	next   atomic.Uint64
	client *http.Client
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}, Timeout: 30 * time.Second}
}

// result is one decision's outcome.
type result struct {
	Allow  bool `json:"allow"`
	Status int  `json:"status"`
}

// ask sends body once and returns the decision (keyauthz's result object or OPA's).
func (t *target) ask(ctx context.Context, body []byte) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("%s: HTTP %d: %.200s", t.name, resp.StatusCode, b)
	}
	var out struct {
		Result *result `json:"result"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Result == nil {
		return result{}, fmt.Errorf("%s: no result in %.200s", t.name, b)
	}
	return *out.Result, nil
}

// stats is the outcome of driving one target.
type stats struct {
	Decisions  int64   `json:"decisions"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"decisions_per_second"`
	P50Micros  float64 `json:"p50_us"`
	P90Micros  float64 `json:"p90_us"`
	P99Micros  float64 `json:"p99_us"`
	latencies  []time.Duration
	firstError string
}

// drive sends t's bodies round-robin from conns workers (each starting at its own offset,
// keep-alive connections) for d, and returns the statistics. Only the status of each response
// is checked here, not the body, so that the load generator spends little CPU.
func drive(ctx context.Context, t *target, conns int, d time.Duration) *stats {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		all      []time.Duration
		errs     atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range conns {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			for i := w; ctx.Err() == nil; i++ {
				var body []byte
				if t.body != nil {
					body = t.body(t.next.Add(1))
				} else {
					body = t.bodies[i%len(t.bodies)]
				}
				t0 := time.Now()
				err := t.send(ctx, body)
				if ctx.Err() != nil {
					break // cut off by the deadline: not counted
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	s := &stats{latencies: all, Errors: errs.Load(), Seconds: time.Since(start).Seconds()}
	if v := firstErr.Load(); v != nil {
		s.firstError = v.(string)
	}
	s.finish()
	return s
}

// send posts body and drains the response, checking only the HTTP status.
func (t *target) send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", t.name, resp.StatusCode)
	}
	return nil
}

// merge adds o's samples to s.
func (s *stats) merge(o *stats) {
	s.latencies = append(s.latencies, o.latencies...)
	s.Errors += o.Errors
	s.Seconds += o.Seconds
	if s.firstError == "" {
		s.firstError = o.firstError
	}
	s.finish()
}

func (s *stats) finish() {
	slices.Sort(s.latencies)
	s.Decisions = int64(len(s.latencies))
	if s.Seconds > 0 {
		s.PerSecond = round1(float64(s.Decisions) / s.Seconds)
	}
	s.P50Micros = percentile(s.latencies, 50)
	s.P90Micros = percentile(s.latencies, 90)
	s.P99Micros = percentile(s.latencies, 99)
}

func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)*p/100, len(sorted)-1)
	return round1(float64(sorted[i].Nanoseconds()) / 1e3)
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

package gateway

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkThroughNginx measures one allowed request through nginx (auth_request to keyauthz,
// then the upstream), and reports the median latency.
func BenchmarkThroughNginx(b *testing.B) {
	s := startStack(b)
	benchLatency(b, func() *http.Request {
		req, _ := http.NewRequest("GET", s.nginx+"/api/engine/v2/systems/sys-1", nil)
		req.Host = "localhost"
		req.Header.Set("X-API-Key", s.key.Key)
		return req
	})
}

// BenchmarkDirect measures the same decision asked of keyauthz's /authz/nginx directly, as
// nginx's subrequest asks it, and reports the median latency.
func BenchmarkDirect(b *testing.B) {
	k := startKeyauthz(b)
	key := createPanelKey(b, k, "booking-panel")
	benchLatency(b, func() *http.Request {
		req, _ := http.NewRequest("GET", k.URL+"/authz/nginx", nil)
		req.Host = "localhost"
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/api/engine/v2/systems/sys-1")
		req.Header.Set("X-Original-Remote-Addr", "127.0.0.1")
		req.Header.Set("X-API-Key", key.Key)
		return req
	})
}

func benchLatency(b *testing.B, newReq func() *http.Request) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	do := func() time.Duration {
		start := time.Now()
		resp, err := client.Do(newReq())
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	for range 50 { // warm the connections and caches
		do()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		lat = append(lat, do())
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

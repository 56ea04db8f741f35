package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Per-key limits on every surface (docs/limits.md): the client address each one trusts, the
// allow-list judged on it, and the rate limit's 429 with Retry-After.

// limitedKey creates a key of the panel user with the booking panel's scopes and the given
// limits, straight in the store, and returns its plaintext.
func limitedKey(t *testing.T, f *fixture, name string, cidrs []string, rl *keys.RateLimit) (string, *keys.APIKey) {
	t.Helper()
	k := &keys.APIKey{Name: name, UserID: f.PanelUser.ID, Scopes: []string{"systems.read", "zones.read"},
		AllowedCIDRs: cidrs, RateLimit: rl}
	pt, err := f.Store.CreateKey(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pt), k
}

// dataDecision asks the Data API about GET /systems/sys-1 with key from clientIP ("" for none).
func dataDecision(t *testing.T, f *fixture, key, clientIP string) (int, map[string]any) {
	t.Helper()
	in := map[string]any{"method": "GET", "path": v2 + "/systems/sys-1", "host": "localhost", "headers": map[string]string{"x-api-key": key}}
	if clientIP != "" {
		in["client_ip"] = clientIP
	}
	status, body, _ := send(t, newRequest(t, "POST", f.URL+"/v1/data/keyauthz/decision", map[string]any{"input": in}))
	var out struct {
		Result map[string]any `json:"result"`
	}
	_ = json.Unmarshal(body, &out)
	return status, out.Result
}

// forwardAuth asks a forward-auth endpoint about GET /systems/sys-1 with key and extra headers.
func forwardAuth(t *testing.T, f *fixture, endpoint, key string, h http.Header) (int, []byte, http.Header) {
	t.Helper()
	path := v2 + "/systems/sys-1"
	url := f.URL + endpoint
	if endpoint == "/authz/envoy" {
		url += path
	}
	req := newRequest(t, "GET", url, nil)
	req.Host = "localhost"
	switch endpoint {
	case "/authz/nginx":
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", path)
		req.Header.Set("X-Original-Remote-Addr", "192.0.2.1")
	case "/authz/traefik":
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", path)
		req.Header.Set("X-Forwarded-Host", "localhost")
	}
	req.Header.Set("X-API-Key", key)
	for name, v := range h {
		req.Header[name] = v
	}
	return send(t, req)
}

const notAllowed = "client address not allowed for this key"

func TestAllowListOnEachSurface(t *testing.T) {
	f := newFixture(t)
	office, _ := limitedKey(t, f, "office", []string{"198.51.100.0/24", "2001:db8::/32"}, nil)
	loopback, _ := limitedKey(t, f, "loopback", []string{"127.0.0.0/8", "::1"}, nil)
	free, _ := limitedKey(t, f, "free", nil, nil)

	t.Run("data API", func(t *testing.T) {
		tests := []struct {
			note, key, ip string
			status        int // of the decision; 0: the request is refused with 400
			message       string
		}{
			{"inside, IPv4", office, "198.51.100.7", 200, "allowed"},
			{"inside, IPv6", office, "2001:db8::42", 200, "allowed"},
			{"inside, IPv4-mapped IPv6", office, "::ffff:198.51.100.7", 200, "allowed"},
			{"outside", office, "192.0.2.1", 403, notAllowed},
			{"no client_ip: fail closed", office, "", 403, notAllowed},
			{"no allow-list, no client_ip", free, "", 200, "allowed"},
			{"no allow-list, any client_ip", free, "192.0.2.1", 200, "allowed"},
			{"client_ip with a port", office, "198.51.100.7:443", 0, ""},
			{"client_ip that is a name", office, "example.com", 0, ""},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				status, res := dataDecision(t, f, tt.key, tt.ip)
				if tt.status == 0 {
					if status != 400 {
						t.Fatalf("status %d, want 400", status)
					}
					return
				}
				if status != 200 || res["status"] != float64(tt.status) || res["message"] != tt.message || res["allow"] != (tt.status == 200) {
					t.Fatalf("%d %v, want a decision %d %q", status, res, tt.status, tt.message)
				}
			})
		}
	})

	t.Run("forward auth", func(t *testing.T) {
		tests := []struct {
			note, endpoint, key string
			h                   http.Header
			status              int
			message             string
		}{
			{"nginx: its header, inside", "/authz/nginx", office, http.Header{"X-Original-Remote-Addr": {"198.51.100.9"}}, 200, ""},
			{"nginx: its header, outside", "/authz/nginx", office, http.Header{"X-Original-Remote-Addr": {"192.0.2.9"}}, 403, notAllowed},
			{"nginx: no header, fail closed", "/authz/nginx", office, http.Header{"X-Original-Remote-Addr": nil}, 403, "missing X-Original-Remote-Addr header"},
			{"nginx: X-Forwarded-For is not its header", "/authz/nginx", office, http.Header{"X-Forwarded-For": {"198.51.100.9"}}, 403, notAllowed},
			{"nginx: the header twice", "/authz/nginx", office, http.Header{"X-Original-Remote-Addr": {"198.51.100.9", "198.51.100.9"}}, 403, "X-Original-Remote-Addr header given more than once"},
			// An nginx configuration that does not set the address lets the client write it: every
			// request is refused, so that it fails closed and is noticed.
			{"nginx: no header, even for a key without a list", "/authz/nginx", free, http.Header{"X-Original-Remote-Addr": nil}, 403, "missing X-Original-Remote-Addr header"},
			{"nginx: a key without a list, any address", "/authz/nginx", free, http.Header{"X-Original-Remote-Addr": {"203.0.113.50"}}, 200, ""},
			{"traefik: right-most entry inside", "/authz/traefik", office, http.Header{"X-Forwarded-For": {"192.0.2.1, 198.51.100.9"}}, 200, ""},
			{"traefik: a forged entry on the left does not count", "/authz/traefik", office, http.Header{"X-Forwarded-For": {"198.51.100.9, 192.0.2.1"}}, 403, notAllowed},
			{"traefik: the last header line counts", "/authz/traefik", office, http.Header{"X-Forwarded-For": {"198.51.100.9", "192.0.2.1"}}, 403, notAllowed},
			{"traefik: no X-Forwarded-For", "/authz/traefik", office, nil, 403, notAllowed},
			{"traefik: nginx's header is not its header", "/authz/traefik", office, http.Header{"X-Original-Remote-Addr": {"198.51.100.9"}}, 403, notAllowed},
			{"envoy: right-most entry inside, IPv6", "/authz/envoy", office, http.Header{"X-Forwarded-For": {"192.0.2.1,2001:db8::5"}}, 200, ""},
			{"envoy: right-most entry with a port is unknown", "/authz/envoy", office, http.Header{"X-Forwarded-For": {"198.51.100.9:5555"}}, 403, notAllowed},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				status, body, _ := forwardAuth(t, f, tt.endpoint, tt.key, tt.h)
				if status != tt.status || tt.message != "" && !strings.Contains(string(body), tt.message) {
					t.Fatalf("%d %s, want %d %q", status, body, tt.status, tt.message)
				}
			})
		}
	})

	t.Run("admin API: the connection", func(t *testing.T) {
		for _, tt := range []struct {
			key    string
			status int
		}{{loopback, 200}, {office, 403}, {free, 200}} {
			req := newRequest(t, "GET", f.URL+v2+"/systems/sys-1", nil)
			req.Host = "localhost"
			req.Header.Set("X-API-Key", tt.key)
			// A forwarding header means nothing to the admin API.
			req.Header.Set("X-Forwarded-For", "198.51.100.9")
			req.Header.Set("X-Original-Remote-Addr", "198.51.100.9")
			status, body, _ := send(t, req)
			// 404: allowed, and the admin API has no such route.
			if want := tt.status; status != want && !(want == 200 && status == 404) {
				t.Errorf("%d %s, want %d", status, body, want)
			}
			if tt.status == 403 && !strings.Contains(string(body), notAllowed) {
				t.Errorf("body %s, want %q", body, notAllowed)
			}
		}
	})

	t.Run("the decision cache tells addresses apart", func(t *testing.T) {
		for range 3 {
			if _, res := dataDecision(t, f, office, "198.51.100.7"); res["allow"] != true {
				t.Fatalf("inside: %v", res)
			}
			if _, res := dataDecision(t, f, office, "192.0.2.1"); res["allow"] != false {
				t.Fatalf("outside, after a cached allow from inside: %v", res)
			}
		}
	})
}

func TestAllowListThroughTheAdminAPI(t *testing.T) {
	f := newFixture(t)
	adminCall := func(method, path string, body any) (int, map[string]any) {
		req := newRequest(t, method, f.URL+path, body)
		req.Host = "localhost"
		req.Header.Set("X-API-Key", f.Admin)
		status, raw, _ := send(t, req)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return status, out
	}
	status, k := adminCall("POST", v2+"/api_keys", map[string]any{
		"name": "limited", "user_id": f.PanelUser.ID, "scopes": []string{"systems.read"},
		"allowed_cidrs": []string{"10.1.2.3/8", "2001:DB8::/32"}, "rate_limit": map[string]any{"rate": 2.5, "burst": 5},
	})
	if status != 201 {
		t.Fatalf("create: %d %v", status, k)
	}
	id := k["id"].(string)
	if got, _ := json.Marshal(k["allowed_cidrs"]); string(got) != `["10.0.0.0/8","2001:db8::/32"]` {
		t.Errorf("allowed_cidrs %s, want normalised", got)
	}
	if got, _ := json.Marshal(k["rate_limit"]); string(got) != `{"burst":5,"rate":2.5}` {
		t.Errorf("rate_limit %s", got)
	}

	tests := []struct {
		note      string
		body      any
		status    int
		cidrs     string // the key's allowed_cidrs afterwards, as JSON
		rateLimit string
		field     string // for a 422, the failing field
	}{
		{"other fields keep the limits", map[string]any{"description": "x"}, 200, `["10.0.0.0/8","2001:db8::/32"]`, `{"burst":5,"rate":2.5}`, ""},
		{"bad network", map[string]any{"allowed_cidrs": []string{"10.0.0.0/8", "10.0.0.0/99"}}, 422, "", "", "allowed_cidrs"},
		{"too many networks", map[string]any{"allowed_cidrs": make65()}, 422, "", "", "allowed_cidrs"},
		{"zero rate", map[string]any{"rate_limit": map[string]any{"rate": 0, "burst": 1}}, 422, "", "", "rate_limit"},
		{"zero burst", map[string]any{"rate_limit": map[string]any{"rate": 1, "burst": 0}}, 422, "", "", "rate_limit"},
		{"rate limit of the wrong type", map[string]any{"rate_limit": "fast"}, 400, "", "", ""},
		{"set", map[string]any{"allowed_cidrs": []string{"192.0.2.1"}, "rate_limit": map[string]any{"rate": 1, "burst": 1}}, 200, `["192.0.2.1/32"]`, `{"burst":1,"rate":1}`, ""},
		{"null clears", map[string]any{"allowed_cidrs": nil, "rate_limit": nil}, 200, `[]`, `null`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			before, _ := f.Store.GetKey(t.Context(), id)
			status, out := adminCall("PATCH", v2+"/api_keys/"+id, tt.body)
			if status != tt.status {
				t.Fatalf("PATCH: %d %v, want %d", status, out, tt.status)
			}
			if status != 200 {
				if tt.field != "" && !strings.Contains(toJSON(out), `"field":"`+tt.field+`"`) {
					t.Errorf("422 body %v, want a failure on %s", out, tt.field)
				}
				after, _ := f.Store.GetKey(t.Context(), id)
				if toJSON(before) != toJSON(after) {
					t.Errorf("a refused update changed the key:\n%s\n%s", toJSON(before), toJSON(after))
				}
				return
			}
			if got := toJSON(out["allowed_cidrs"]); got != tt.cidrs && !(tt.cidrs == "[]" && got == "null") {
				t.Errorf("allowed_cidrs %s, want %s", got, tt.cidrs)
			}
			if got := toJSON(out["rate_limit"]); got != tt.rateLimit {
				t.Errorf("rate_limit %s, want %s", got, tt.rateLimit)
			}
		})
	}
}

func make65() []string {
	out := make([]string, keys.MaxAllowedCIDRs+1)
	for i := range out {
		out[i] = "10.0." + strconv.Itoa(i) + ".0/24"
	}
	return out
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRateLimitUnderConcurrentLoad sends the same request from many goroutines at once through
// the decision endpoint (answered from the decision cache after the first) and checks that the
// key is allowed no more than its bucket holds: burst at the start plus rate for every second
// that passed, the time measured around the whole run, not asserted.
func TestRateLimitUnderConcurrentLoad(t *testing.T) {
	f := newFixture(t)
	// At least minRequests, and on until some were limited (a slow machine needs more to get
	// past the bucket's refill), but never more than maxRequests.
	const rate, burst, workers, minRequests, maxRequests = 40.0, 25, 8, 320, 5000
	key, _ := limitedKey(t, f, "bucket", nil, &keys.RateLimit{Rate: rate, Burst: burst})

	var allowed, limited, other, sent atomic.Int64
	var badRetry atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if n := sent.Add(1); n > maxRequests || n > minRequests && limited.Load() > 0 {
					return
				}
				status, res := dataDecision(t, f, key, "")
				switch {
				case status == 200 && res["allow"] == true:
					allowed.Add(1)
				case status == 200 && res["status"] == float64(429) && res["message"] == "rate limit exceeded" && res["allow"] == false:
					limited.Add(1)
					if ra, _ := res["retry_after"].(float64); ra < 1 {
						badRetry.Store(res)
					}
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	bound := float64(burst) + rate*elapsed.Seconds()
	t.Logf("%d requests in %v: %d allowed (bound %.1f = burst %d + rate %.0f/s × %.3fs), %d limited",
		allowed.Load()+limited.Load()+other.Load(), elapsed, allowed.Load(), bound, burst, rate, elapsed.Seconds(), limited.Load())
	if other.Load() != 0 {
		t.Fatalf("%d answers were neither an allow nor a 429", other.Load())
	}
	if float64(allowed.Load()) > bound {
		t.Errorf("%d allowed, more than the bucket's bound %.1f", allowed.Load(), bound)
	}
	if allowed.Load() < burst {
		t.Errorf("%d allowed, fewer than the burst %d that a full bucket holds", allowed.Load(), burst)
	}
	if v := badRetry.Load(); v != nil {
		t.Errorf("a 429 without retry_after ≥ 1: %v", v)
	}
	if limited.Load() == 0 {
		t.Fatalf("nothing was limited in %d requests over %v", maxRequests, elapsed)
	}

	metrics := string(mustGet(t, f.URL+"/metrics"))
	m := regexp.MustCompile(`(?m)^keyauthz_rate_limited_total (\d+)`).FindStringSubmatch(metrics)
	if m == nil || m[1] != strconv.FormatInt(limited.Load(), 10) {
		t.Errorf("keyauthz_rate_limited_total %v, want %d", m, limited.Load())
	}
	if !strings.Contains(metrics, `keyauthz_decisions_total{result="deny",status="429"}`) {
		t.Error("/metrics does not count the 429 decisions")
	}
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	status, body, _ := send(t, newRequest(t, "GET", url, nil))
	if status != 200 {
		t.Fatalf("GET %s: %d", url, status)
	}
	return body
}

// TestRateLimitAnswers checks the 429 of each surface with a bucket of one token that refills
// once in 1000 s, so that the second request is always refused, and that a change to the key
// gives it a new bucket.
func TestRateLimitAnswers(t *testing.T) {
	f := newFixture(t)
	oneShot := &keys.RateLimit{Rate: 0.001, Burst: 1}

	t.Run("forward auth and admin API", func(t *testing.T) {
		tests := []struct {
			note, endpoint string // "" for the admin API
			status         int    // of the refused request
			authStatus     string // X-Auth-Status
		}{
			{"traefik: 429", "/authz/traefik", 429, "429"},
			{"envoy: 429", "/authz/envoy", 429, "429"},
			{"nginx: 403 to nginx, 429 in X-Auth-Status", "/authz/nginx", 403, "429"},
			{"admin API: 429", "", 429, ""},
		}
		for i, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				key, _ := limitedKey(t, f, "one shot "+strconv.Itoa(i), nil, oneShot)
				ask := func() (int, []byte, http.Header) {
					if tt.endpoint != "" {
						return forwardAuth(t, f, tt.endpoint, key, nil)
					}
					req := newRequest(t, "GET", f.URL+v2+"/api_keys/inspect", nil)
					req.Host = "localhost"
					req.Header.Set("X-API-Key", key)
					return send(t, req)
				}
				if status, body, _ := ask(); status != 200 {
					t.Fatalf("first request: %d %s", status, body)
				}
				status, body, h := ask()
				if status != tt.status {
					t.Fatalf("second request: %d %s, want %d", status, body, tt.status)
				}
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error != "rate limit exceeded" {
					t.Errorf("body %s, want the error rate limit exceeded", body)
				}
				// 1000 s until the next token: Retry-After in whole seconds, rounded up.
				if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 999 || ra > 1000 {
					t.Errorf("Retry-After %q, want about 1000", h.Get("Retry-After"))
				}
				if got := h.Get("X-Auth-Status"); got != tt.authStatus {
					t.Errorf("X-Auth-Status %q, want %q", got, tt.authStatus)
				}
			})
		}
	})

	t.Run("a denied request takes no token", func(t *testing.T) {
		key, _ := limitedKey(t, f, "denied first", nil, oneShot)
		req := newRequest(t, "POST", f.URL+"/v1/data/keyauthz/decision", map[string]any{"input": map[string]any{
			"method": "DELETE", "path": v2 + "/systems/sys-1", "host": "localhost", "headers": map[string]string{"x-api-key": key}}})
		for range 3 {
			if _, body, _ := send(t, req.Clone(t.Context())); !strings.Contains(string(body), "missing scope") {
				t.Fatalf("DELETE: %s", body)
			}
			req.Body, _ = req.GetBody()
		}
		if _, res := dataDecision(t, f, key, ""); res["allow"] != true {
			t.Fatalf("the first allowed request after three denials: %v", res)
		}
	})

	t.Run("a changed rate limit takes effect at once", func(t *testing.T) {
		key, k := limitedKey(t, f, "changing", nil, oneShot)
		steps := []struct {
			note   string
			change *keys.KeyUpdate
			want   []float64 // statuses of successive decisions
		}{
			{"fresh", nil, []float64{200, 429}},
			{"burst raised", &keys.KeyUpdate{RateLimit: keys.Some(keys.RateLimit{Rate: 0.001, Burst: 2})}, []float64{200, 200, 429}},
			{"limit removed", &keys.KeyUpdate{RateLimit: keys.Nullable[keys.RateLimit]{Set: true}}, []float64{200, 200, 200, 200}},
			{"limit set again", &keys.KeyUpdate{RateLimit: keys.Some(*oneShot)}, []float64{200, 429}},
		}
		for _, step := range steps {
			if step.change != nil {
				if _, err := f.Store.UpdateKey(t.Context(), k.ID, *step.change); err != nil {
					t.Fatal(err)
				}
			}
			for i, want := range step.want {
				if _, res := dataDecision(t, f, key, ""); res["status"] != want {
					t.Fatalf("%s: decision %d: %v, want status %v", step.note, i, res, want)
				}
			}
		}
	})
}

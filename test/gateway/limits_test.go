package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections leave from the loopback address ip: nginx
// sees it as $remote_addr, and the documented configuration passes that to keyauthz.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
		CheckRedirect: noRedirects.CheckRedirect,
	}
}

// createLimitedKey creates a key like createPanelKey's, for the same user, with limits.
func createLimitedKey(tb testing.TB, s *stack, name string, limits map[string]any) string {
	tb.Helper()
	body := map[string]any{"name": name, "user_id": s.key.UserID, "scopes": []string{"systems.read"}}
	for k, v := range limits {
		body[k] = v
	}
	var key createdKey
	if st := call(tb, "POST", s.keyauthz.URL+"/api/engine/v2/api_keys", s.keyauthz.AdminKey, body, &key); st != 201 || key.Key == "" {
		tb.Fatalf("create key %s: %d", name, st)
	}
	return key.Key
}

// TestNginxAllowList runs keys with an IP allow-list through nginx with the documented
// configuration: the client address is the connection's as nginx accepted it (two loopback
// addresses stand for two networks), and no header a client sends changes it.
func TestNginxAllowList(t *testing.T) {
	s := startStack(t)
	const sys = "/api/engine/v2/systems/sys-1"
	officeKey := createLimitedKey(t, s, "office only", map[string]any{"allowed_cidrs": []string{"127.0.0.3/32"}})
	elsewhereKey := createLimitedKey(t, s, "elsewhere only", map[string]any{"allowed_cidrs": []string{"192.0.2.0/24", "2001:db8::/32"}})
	office, home := clientFrom("127.0.0.3"), clientFrom("127.0.0.1")
	// What a client would forge to be taken for an allowed address.
	forged := func(key, ip string) http.Header {
		return http.Header{"X-Api-Key": {key}, "X-Original-Remote-Addr": {ip}, "X-Forwarded-For": {ip}, "X-Real-Ip": {ip}}
	}
	tests := []struct {
		note   string
		client *http.Client
		header http.Header
		status int
	}{
		{"from the allowed address", office, http.Header{"X-Api-Key": {officeKey}}, 200},
		{"from the allowed address, whatever it claims", office, forged(officeKey, "192.0.2.1"), 200},
		{"from another address", home, http.Header{"X-Api-Key": {officeKey}}, 403},
		{"from another address, claiming the allowed one", home, forged(officeKey, "127.0.0.3"), 403},
		{"a list without the address", office, http.Header{"X-Api-Key": {elsewhereKey}}, 403},
		{"a list without the address, claiming one in it", office, forged(elsewhereKey, "192.0.2.1"), 403},
		{"a key without a list, from anywhere", home, http.Header{"X-Api-Key": {s.key.Key}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			before := len(s.app.requests())
			status, body := through(t, tt.client, "GET", s.nginx+sys, tt.header)
			if status != tt.status {
				t.Fatalf("%d %s, want %d", status, body, tt.status)
			}
			if status == 403 {
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "client address not allowed for this key" {
					t.Errorf("deny body %q (%v), want the allow-list named", body, err)
				}
				if len(s.app.requests()) != before {
					t.Error("a denied request reached the upstream")
				}
			}
		})
	}
}

// TestNginxConfigWithoutClientAddress: an nginx configuration that does not set
// X-Original-Remote-Addr (one written before allow-lists) would pass a client's own header of
// that name to keyauthz. keyauthz cannot tell such a header from nginx's, so it requires the
// header on every request: under such a configuration every ordinary request is refused, allow-
// list or not, and the misconfiguration cannot go unnoticed (a client that forged the header
// would get through while it ran, which is why docs/gateways.md must be followed as written).
func TestNginxConfigWithoutClientAddress(t *testing.T) {
	nginxBinary(t)
	k := startKeyauthz(t)
	app := startUpstream(t)
	nginx := startNginx(t, k.Addr, app.URL, "        proxy_set_header X-Original-Remote-Addr $remote_addr;")
	s := &stack{keyauthz: k, app: app, nginx: nginx, key: createPanelKey(t, k, "booking-panel")}
	officeKey := createLimitedKey(t, s, "office only", map[string]any{"allowed_cidrs": []string{"10.1.0.0/16"}})
	const sys = "/api/engine/v2/systems/sys-1"
	for _, tt := range []struct {
		note   string
		header http.Header
	}{
		{"an allow-listed key, no claim", http.Header{"X-Api-Key": {officeKey}}},
		{"a key without a list", http.Header{"X-Api-Key": {s.key.Key}}},
	} {
		t.Run(tt.note, func(t *testing.T) {
			status, body := through(t, noRedirects, "GET", nginx+sys, tt.header)
			var e struct{ Error string }
			_ = json.Unmarshal([]byte(body), &e)
			if status != 403 || !strings.HasPrefix(e.Error, "missing X-Original-Remote-Addr header") {
				t.Fatalf("%d %s, want 403 missing X-Original-Remote-Addr header", status, body)
			}
		})
	}
	if n := len(app.requests()); n != 0 {
		t.Errorf("%d requests reached the upstream, want none", n)
	}
}

// TestNginxRateLimit: a key over its rate limit gets 429 with Retry-After from nginx (keyauthz
// answers nginx 403 and X-Auth-Status 429, as auth_request takes no 429).
func TestNginxRateLimit(t *testing.T) {
	s := startStack(t)
	const sys = "/api/engine/v2/systems/sys-1"
	key := createLimitedKey(t, s, "one shot", map[string]any{"rate_limit": map[string]any{"rate": 0.001, "burst": 1}})
	h := http.Header{"X-Api-Key": {key}}
	if status, body := through(t, noRedirects, "GET", s.nginx+sys, h); status != 200 {
		t.Fatalf("first request: %d %s", status, body)
	}
	req, err := http.NewRequest("GET", s.nginx+sys, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	req.Header = h
	before := len(s.app.requests())
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != 429 || e.Error != "rate limit exceeded" {
		t.Fatalf("second request: %d %q, want 429 rate limit exceeded", resp.StatusCode, e.Error)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 999 || ra > 1000 {
		t.Errorf("Retry-After %q, want about 1000 (one token in 1000 s)", resp.Header.Get("Retry-After"))
	}
	if len(s.app.requests()) != before {
		t.Error("a limited request reached the upstream")
	}
	// Other keys are not affected, and an ordinary 403 is still a 403.
	if status, body := through(t, noRedirects, "DELETE", s.nginx+sys, http.Header{"X-Api-Key": {s.key.Key}}); status != 403 || !strings.Contains(body, "missing scope") {
		t.Errorf("another key's 403: %d %s", status, body)
	}
}

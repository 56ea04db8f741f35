package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// stack is keyauthz, a recording upstream and nginx in front of both.
type stack struct {
	keyauthz *keyauthz
	app      *upstream
	nginx    string // nginx's base URL
	key      createdKey
}

func startStack(tb testing.TB, extra ...string) *stack {
	tb.Helper()
	nginxBinary(tb) // skip early, before building anything, when nginx is missing
	k := startKeyauthz(tb, extra...)
	app := startUpstream(tb)
	return &stack{keyauthz: k, app: app, nginx: startNginx(tb, k.Addr, app.URL), key: createPanelKey(tb, k, "booking-panel")}
}

// through sends a request to nginx with Host: localhost.
func through(tb testing.TB, client *http.Client, method, url string, header http.Header) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Host = "localhost"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

var noRedirects = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func TestNginxAuthRequest(t *testing.T) {
	s := startStack(t)
	const sys = "/api/engine/v2/systems/sys-1"
	withKey := http.Header{"X-Api-Key": {s.key.Key}}

	t.Run("booking panel reads a system", func(t *testing.T) {
		// A forged identity header from the client must be replaced by keyauthz's.
		h := http.Header{"X-Api-Key": {s.key.Key}, "X-Auth-User-Id": {"forged"}}
		status, body := through(t, noRedirects, "GET", s.nginx+sys, h)
		if status != 200 || !strings.Contains(body, "upstream") {
			t.Fatalf("GET %s: %d %s", sys, status, body)
		}
		if !slices.Contains(s.app.requests(), seenRequest{"GET", sys, s.key.UserID, s.key.ID}) {
			t.Errorf("upstream did not see the request with the user id %s: %+v", s.key.UserID, s.app.requests())
		}
	})
	t.Run("booking panel cannot delete a system", func(t *testing.T) {
		before := len(s.app.requests())
		status, body := through(t, noRedirects, "DELETE", s.nginx+sys, withKey)
		if status != 403 {
			t.Fatalf("DELETE %s: %d %s", sys, status, body)
		}
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "missing scope: systems.write or public.write" {
			t.Errorf("deny body %q (%v), want the missing scope named", body, err)
		}
		if len(s.app.requests()) != before {
			t.Errorf("a denied request reached the upstream")
		}
	})
	t.Run("no key", func(t *testing.T) {
		status, body := through(t, noRedirects, "GET", s.nginx+sys, nil)
		if status != 401 || !strings.Contains(body, "missing credentials") {
			t.Fatalf("GET %s without a key: %d %s", sys, status, body)
		}
	})
	t.Run("key in the api-key parameter", func(t *testing.T) {
		status, body := through(t, noRedirects, "GET", s.nginx+sys+"?api-key="+url.QueryEscape(s.key.Key), nil)
		if status != 200 {
			t.Fatalf("GET %s?api-key=: %d %s", sys, status, body)
		}
	})
	t.Run("key in the cookie", func(t *testing.T) {
		status, body := through(t, noRedirects, "GET", s.nginx+sys, http.Header{"Cookie": {"api-key=" + s.key.Key}})
		if status != 200 {
			t.Fatalf("GET %s with the cookie: %d %s", sys, status, body)
		}
	})
	t.Run("websocket control needs control.write", func(t *testing.T) {
		h := http.Header{"X-Api-Key": {s.key.Key}, "Upgrade": {"websocket"}, "Connection": {"Upgrade"}}
		if status, body := through(t, noRedirects, "GET", s.nginx+"/api/engine/v2/systems/control", h); status == 401 || status == 403 {
			t.Fatalf("websocket control: %d %s", status, body)
		}
	})
	t.Run("dot-dot is judged as the parent", func(t *testing.T) {
		status, body := through(t, noRedirects, "GET", s.nginx+"/api/engine/v2/systems/%2e%2e/api_keys", withKey)
		if status != 403 {
			t.Fatalf("dot-dot to api_keys: %d %s", status, body)
		}
	})
	t.Run("a deleted key is refused on the very next request", func(t *testing.T) {
		if status, _ := through(t, noRedirects, "GET", s.nginx+sys, withKey); status != 200 {
			t.Fatalf("before delete: %d", status)
		}
		if st := call(t, "DELETE", s.keyauthz.URL+"/api/engine/v2/api_keys/"+s.key.ID, s.keyauthz.AdminKey, nil, nil); st != 202 {
			t.Fatalf("delete key: %d", st)
		}
		status, body := through(t, noRedirects, "GET", s.nginx+sys, withKey)
		if status != 401 || !strings.Contains(body, "unknown X-API-Key") {
			t.Fatalf("after delete: %d %s", status, body)
		}
	})
}

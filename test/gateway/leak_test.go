package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoKeyMaterialInLogs drives many decisions with real keys on every channel (decision
// endpoint, forward auth in the three gateway styles, the admin API; header, ?api-key= and cookie)
// and then searches the decision log, the debug log on stderr and stdout for every key string
// and every secret part used.
func TestNoKeyMaterialInLogs(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "decisions.jsonl")
	k := startKeyauthz(t, "--log-level", "debug", "--decision-log", logPath)
	used := []string{k.AdminKey}
	for i := range 3 {
		used = append(used, createPanelKey(t, k, fmt.Sprintf("panel-%d", i)).Key)
	}
	// A well-formed key that is not stored, and one with a wrong secret: refused, but their
	// secrets must not be logged either.
	id, _, _ := strings.Cut(used[1], ".")
	used = append(used, "0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		id+".BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")

	paths := []string{"/api/engine/v2/systems/sys-1", "/api/engine/v2/api_keys", "/api/engine/v2/users/current", "/api/staff/v1/x?zone=1"}
	n := 0
	for _, key := range used {
		for _, p := range paths {
			withQuery := p + sep(p) + "api-key=" + url.QueryEscape(key)
			escapedName := p + sep(p) + "%61pi-key=" + url.QueryEscape(key)
			for _, ch := range []struct {
				path   string
				header http.Header
			}{
				{p, http.Header{"X-Api-Key": {key}}},
				{withQuery, nil},
				{escapedName, nil},
				{p, http.Header{"Cookie": {"a=b; api-key=" + key}}},
			} {
				// Data API.
				hdr := map[string]string{}
				for name, v := range ch.header {
					hdr[strings.ToLower(name)] = v[0]
				}
				body := map[string]any{"input": map[string]any{"method": "GET", "path": ch.path, "host": "localhost", "headers": hdr}}
				call(t, "POST", k.URL+"/v1/data/keyauthz/decision", "", body, nil)
				call(t, "POST", k.URL+"/v1/data/keyauthz/allow", "", body, nil)
				// Forward auth: nginx, Traefik, Envoy.
				rawGet(t, k.URL+"/authz/nginx", merge(http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {ch.path}, "X-Original-Remote-Addr": {"192.0.2.1"}}, ch.header))
				rawGet(t, k.URL+"/authz/traefik", merge(http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {ch.path}, "X-Forwarded-Host": {"localhost"}}, ch.header))
				rawGet(t, k.URL+"/authz/envoy"+ch.path, ch.header)
				// The admin API itself.
				rawGet(t, k.URL+ch.path, ch.header)
				n += 5
				if strings.HasPrefix(p, "/api/engine/v2") {
					n++ // outside the admin base, a direct request is a plain 404, not a decision
				}
			}
		}
	}
	logData, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(logData), "\n"); lines < n {
		t.Errorf("decision log has %d lines, want at least %d", lines, n)
	}
	if !strings.Contains(k.Stderr.String(), `"msg":"request"`) {
		t.Errorf("no debug request log on stderr")
	}
	for what, text := range map[string]string{"decision log": string(logData), "stderr": k.Stderr.String(), "stdout": k.Stdout.String()} {
		for _, key := range used {
			_, secret, _ := strings.Cut(key, ".")
			if strings.Contains(text, key) || strings.Contains(text, secret) || strings.Contains(text, url.QueryEscape(key)) {
				t.Errorf("%s holds key material of key %s...", what, key[:8])
			}
		}
	}
}

func sep(p string) string {
	if strings.Contains(p, "?") {
		return "&"
	}
	return "?"
}

func merge(a, b http.Header) http.Header {
	out := a.Clone()
	for k, v := range b {
		out[k] = v
	}
	return out
}

// rawGet sends GET with Host: localhost and the path exactly as written.
func rawGet(t *testing.T, rawURL string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Errorf("GET %s: %d", rawURL, resp.StatusCode)
	}
	return resp.StatusCode
}

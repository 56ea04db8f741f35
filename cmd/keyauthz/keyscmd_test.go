package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestKeysCommand drives `keyauthz keys` against a real server, as an operator would: create a
// key, find it in the listing, show it, delete it, and see it refused.
func TestKeysCommand(t *testing.T) {
	ts := startServer(t, "")
	localhost := strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
	// JSON output, as this command printed before it had tables (cli_admin_test.go tests those).
	env := map[string]string{"KEYAUTHZ_URL": localhost, "KEYAUTHZ_API_KEY": ts.AdminKey, "KEYAUTHZ_OUTPUT": "json"}
	getenv := func(k string) string { return env[k] }
	keys := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"keys"}, args...), getenv, &out, &errOut)
		return out.String(), err
	}

	body := ts.admin(t, "GET", "/api/engine/v2/api_keys/inspect", nil, 200).body
	var me struct {
		User struct{ ID string } `json:"user"`
	}
	if err := json.Unmarshal(body, &me); err != nil || me.User.ID == "" {
		t.Fatalf("inspect: %s (%v)", body, err)
	}

	out, err := keys("create", "--name", "cli panel", "--user-id", me.User.ID, "--scopes", "systems.read,control")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var created struct {
		ID      string  `json:"id"`
		XAPIKey *string `json:"x_api_key"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.XAPIKey == nil {
		t.Fatalf("create printed %q (%v)", out, err)
	}

	if out, err = keys("list", "--q", "cli panel"); err != nil || !strings.Contains(out, created.ID) {
		t.Fatalf("list: %q, %v", out, err)
	}
	if out, err = keys("show", created.ID); err != nil || !strings.Contains(out, `"x_api_key": null`) {
		t.Fatalf("show: %q, %v", out, err)
	}
	if _, err = keys("delete", created.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err = keys("show", created.ID); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("show after delete: want a 404 error, got %v", err)
	}
	if _, err = keys("create", "--name", "bad", "--user-id", me.User.ID, "--scopes", "a.b.c"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("create with a bad scope: want a 400 error, got %v", err)
	}

	scopes := ts.admin(t, "GET", "/api/engine/v2/scopes", nil, 200).body
	if !strings.Contains(string(scopes), `"api_keys"`) || !strings.Contains(string(scopes), `"public"`) {
		t.Errorf("GET /scopes: %s", scopes)
	}

	// The requests above went through the caches serve wires in; /metrics counts them.
	metrics := string(ts.must(t, call{method: "GET", path: "/metrics"}).body)
	for _, series := range []string{`keyauthz_cache_hits_total{cache="key"}`, `keyauthz_cache_misses_total{cache="decision"}`} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

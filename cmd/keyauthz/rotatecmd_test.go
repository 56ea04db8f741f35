package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestKeysRotateCommand drives `keyauthz keys rotate` against a real server: rotate a key,
// use the new key printed once and the old one during the overlap, see both states, and see
// a second rotation and a bad --overlap refused.
func TestKeysRotateCommand(t *testing.T) {
	ts, env := cliServer(t)
	keys := func(env map[string]string, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"keys"}, args...), func(k string) string { return env[k] }, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	body := ts.admin(t, "GET", "/api/engine/v2/api_keys/inspect", nil, 200).body
	var me struct {
		User struct{ ID string } `json:"user"`
	}
	if err := json.Unmarshal(body, &me); err != nil || me.User.ID == "" {
		t.Fatalf("inspect: %s (%v)", body, err)
	}
	out, _, err := keys(with(env, "KEYAUTHZ_OUTPUT", "json"), "create", "--name", "ops", "--user-id", me.User.ID,
		"--scopes", "api_keys,public", "--permissions", "admin")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var old struct {
		ID      string `json:"id"`
		XAPIKey string `json:"x_api_key"`
	}
	if err := json.Unmarshal([]byte(out), &old); err != nil || old.XAPIKey == "" {
		t.Fatalf("create printed %q (%v)", out, err)
	}

	out, stderr, err := keys(env, "rotate", old.ID, "--overlap", "1h")
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	rec := parseRecord(t, out)
	newID, newKey := rec["ID"], rec["API KEY"]
	if newID == "" || newID == old.ID || !strings.HasPrefix(newKey, newID+".") || rec["NAME"] != "ops" ||
		rec["ROTATED FROM"] != old.ID || rec["STATE"] != "active" || rec["SCOPES"] != "api_keys,public" || rec["PERMISSIONS"] != "admin" {
		t.Errorf("rotate printed:\n%s", out)
	}
	if !strings.Contains(stderr, "only time it is shown") || !strings.Contains(stderr, "keeps working for 1h") {
		t.Errorf("rotate's warnings: %q", stderr)
	}

	// Both keys work during the overlap; the listing shows both with their states.
	for _, key := range []string{old.XAPIKey, newKey} {
		if out, _, err = keys(with(env, "KEYAUTHZ_API_KEY", key), "show", old.ID); err != nil {
			t.Fatalf("show with the %s key: %v", map[bool]string{true: "old", false: "new"}[key == old.XAPIKey], err)
		}
	}
	if shown := parseRecord(t, out); shown["STATE"] != "rotating" || shown["REPLACED BY"] != newID {
		t.Errorf("show of the old key:\n%s", out)
	}
	out, _, err = keys(env, "list", "--q", "ops")
	if err != nil {
		t.Fatal(err)
	}
	rows := parseTable(t, out)
	if r := findRow(rows, old.ID); r == nil || r["STATE"] != "rotating" {
		t.Errorf("list: old key's row %v", r)
	}
	if r := findRow(rows, newID); r == nil || r["STATE"] != "active" {
		t.Errorf("list: new key's row %v", r)
	}

	// Refusals: a second rotation (409 from the API), a bad --overlap (a usage error, before
	// any request).
	if _, _, err = keys(env, "rotate", old.ID); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("second rotate: want a 409 error, got %v", err)
	}
	for _, bad := range []string{"1d", "-1h", "721h", "soon"} {
		if _, _, err = keys(env, "rotate", newID, "--overlap", bad); !errors.Is(err, errUsage) {
			t.Errorf("rotate --overlap %s: want a usage error, got %v", bad, err)
		}
	}
}

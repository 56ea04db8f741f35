package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestKeysLimitFlags drives --allowed-cidrs and --rate-limit of `keyauthz keys create` and
// `update` against a real server (docs/limits.md): set, shown, cleared, and refused when bad.
func TestKeysLimitFlags(t *testing.T) {
	ts := startServer(t, "")
	localhost := strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
	env := map[string]string{"KEYAUTHZ_URL": localhost, "KEYAUTHZ_API_KEY": ts.AdminKey, "KEYAUTHZ_OUTPUT": "json"}
	keysCmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"keys"}, args...), func(k string) string { return env[k] }, &out, &errOut)
		return out.String(), err
	}
	var me struct {
		User struct{ ID string } `json:"user"`
	}
	if err := json.Unmarshal(ts.admin(t, "GET", "/api/engine/v2/api_keys/inspect", nil, 200).body, &me); err != nil {
		t.Fatal(err)
	}
	type limits struct {
		ID           string          `json:"id"`
		AllowedCIDRs []string        `json:"allowed_cidrs"`
		RateLimit    json.RawMessage `json:"rate_limit"`
	}
	parse := func(out string) limits {
		t.Helper()
		var l limits
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, l.RateLimit); err != nil {
			t.Fatal(err)
		}
		l.RateLimit = b.Bytes()
		return l
	}

	out, err := keysCmd("create", "--name", "limited", "--user-id", me.User.ID, "--scopes", "systems.read",
		"--allowed-cidrs", "10.1.2.3/8, ::1", "--rate-limit", "2.5,10")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	k := parse(out)
	if strings.Join(k.AllowedCIDRs, " ") != "10.0.0.0/8 ::1/128" || string(k.RateLimit) != `{"rate":2.5,"burst":10}` {
		t.Fatalf("created with %q %s", k.AllowedCIDRs, k.RateLimit)
	}

	tests := []struct {
		note      string
		args      []string
		wantErr   string // a part of the error; "" for success
		cidrs     string
		rateLimit string
	}{
		{"other flags keep the limits", []string{"--description", "lobby"}, "", "10.0.0.0/8 ::1/128", `{"rate":2.5,"burst":10}`},
		{"a malformed rate limit is a usage error", []string{"--rate-limit", "fast"}, "--rate-limit", "", ""},
		{"a rate without a burst is a usage error", []string{"--rate-limit", "5"}, "--rate-limit", "", ""},
		{"a bad network is the server's 422", []string{"--allowed-cidrs", "10.0.0.0/99"}, "422", "", ""},
		{"a zero burst is the server's 422", []string{"--rate-limit", "1,0"}, "422", "", ""},
		{"change both", []string{"--allowed-cidrs", "192.0.2.7", "--rate-limit", "1,1"}, "", "192.0.2.7/32", `{"rate":1,"burst":1}`},
		{"none clears both", []string{"--allowed-cidrs", "none", "--rate-limit", "none"}, "", "", "null"},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			out, err := keysCmd(append([]string{"update", k.ID}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			got := parse(out)
			if strings.Join(got.AllowedCIDRs, " ") != tt.cidrs || string(got.RateLimit) != tt.rateLimit {
				t.Errorf("limits %q %s, want %q %s", got.AllowedCIDRs, got.RateLimit, tt.cidrs, tt.rateLimit)
			}
		})
	}

	// The table form shows the limits when set.
	if _, err := keysCmd("update", k.ID, "--allowed-cidrs", "192.0.2.0/24", "--rate-limit", "5,20"); err != nil {
		t.Fatal(err)
	}
	env["KEYAUTHZ_OUTPUT"] = "table"
	out, err = keysCmd("show", k.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ALLOWED CIDRS", "192.0.2.0/24", "RATE LIMIT", "5/s, burst 20"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

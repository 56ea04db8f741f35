package server_test

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestReimportNeverRevivesRevokedKey is the security review's finding, through the real
// server: a key imported from a PlaceOS export, then deleted through the admin API, stays
// refused when the same export is posted again. The re-import is a 409 naming the key and
// when it was deleted, writes nothing, and its dry run reports the same conflict.
func TestReimportNeverRevivesRevokedKey(t *testing.T) {
	f := newFixture(t)
	const id, secret = "fedcba9876543210fedcba9876543210", "q2wBvYtR8sK0pL3mN6xZ9cV1bH4jG7fD2eA5uI8oP0k"
	mac := hmac.New(sha512.New, []byte(secret))
	mac.Write([]byte(id))
	export := `{"id":"authority-r1","name":"R","domain":"revoked.example"}
{"id":"user-r1","authority_id":"authority-r1","name":"Panel","email":"panel@revoked.example","sys_admin":false,"support":false,"groups":[]}
{"id":"` + id + `","name":"kiosk","scopes":["public.read"],"permissions":0,"secret":"` + hex.EncodeToString(mac.Sum(nil)) + `","user_id":"user-r1","authority_id":"authority-r1"}
`
	const v2 = "/api/engine/v2"
	admin := func(method, path, query, body string) (int, map[string]any) {
		t.Helper()
		req := newRequest(t, method, f.URL+v2+path+query, nil)
		if body != "" {
			req = newRequest(t, method, f.URL+v2+path+query, body)
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
		req.Host = "localhost"
		req.Header.Set("X-API-Key", f.Admin)
		status, b, _ := send(t, req)
		var v map[string]any
		_ = json.Unmarshal(b, &v) // a 202 has no body
		return status, v
	}
	// use is the key's request through nginx's forward auth: its status.
	use := func() int {
		t.Helper()
		req := newRequest(t, http.MethodGet, f.URL+"/authz/nginx", nil)
		req.Host = "revoked.example"
		req.Header.Set("X-Original-URI", v2+"/systems")
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-Remote-Addr", "192.0.2.7") // as nginx sets it from $remote_addr
		req.Header.Set("X-API-Key", id+"."+secret)
		status, _, _ := send(t, req)
		return status
	}
	conflict := func(v map[string]any) string {
		t.Helper()
		recs, _ := v["records"].([]any)
		for _, r := range recs {
			if r, _ := r.(map[string]any); r["id"] == id && r["action"] == "conflict" {
				reason, _ := r["reason"].(string)
				return reason
			}
		}
		return ""
	}
	wantReason := func(reason string) bool {
		return strings.HasPrefix(reason, "key "+id+" was deleted at ") &&
			strings.HasSuffix(reason, "; a revoked key is never brought back by an import")
	}

	steps := []struct {
		name  string
		run   func(t *testing.T)
		using int // the key's status afterwards
	}{
		{"import", func(t *testing.T) {
			if status, v := admin(http.MethodPost, "/import/placeos", "", export); status != http.StatusOK || v["imported"] != true {
				t.Fatalf("import: %d %v", status, v)
			}
		}, http.StatusOK},
		{"delete the key", func(t *testing.T) {
			if status, v := admin(http.MethodDelete, "/api_keys/"+id, "", ""); status != http.StatusAccepted {
				t.Fatalf("delete: %d %v", status, v)
			}
		}, http.StatusUnauthorized},
		{"re-import", func(t *testing.T) {
			status, v := admin(http.MethodPost, "/import/placeos", "", export)
			if status != http.StatusConflict || v["imported"] != false || !strings.Contains(jsonText(v["error"]), "nothing was imported") ||
				!wantReason(conflict(v)) {
				t.Fatalf("re-import: %d %s", status, jsonText(v))
			}
			t.Logf("re-import: %d %s", status, conflict(v))
		}, http.StatusUnauthorized},
		{"dry run", func(t *testing.T) {
			status, v := admin(http.MethodPost, "/import/placeos", "?dry_run=true", export)
			if status != http.StatusOK || v["imported"] != false || !wantReason(conflict(v)) {
				t.Fatalf("dry run: %d %s", status, jsonText(v))
			}
		}, http.StatusUnauthorized},
		{"still gone", func(t *testing.T) {
			if status, v := admin(http.MethodGet, "/api_keys/"+id, "", ""); status != http.StatusNotFound {
				t.Fatalf("GET the deleted key: %d %v", status, v)
			}
		}, http.StatusUnauthorized},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.run(t)
			if got := use(); got != s.using {
				t.Errorf("the key after %s: %d, want %d", s.name, got, s.using)
			}
		})
	}
}

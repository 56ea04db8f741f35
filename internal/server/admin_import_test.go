package server_test

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestImportHTTP is the HTTP contract of POST /api/engine/v2/import/placeos: its media types,
// its parameter, its body limit, the 422 of bad rows by line, the minting cap, and a key
// imported the PlaceOS way allowed at once through the decision endpoint.
func TestImportHTTP(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	mint := func(name string, scopes []string) string {
		t.Helper()
		pt, err := f.Store.CreateKey(ctx, &keys.APIKey{Name: name, UserID: f.AdminUser.ID, Scopes: scopes, Permissions: keys.PermissionAdmin})
		if err != nil {
			t.Fatal(err)
		}
		return string(pt)
	}
	keysOnly := mint("keys only", []string{"api_keys"})
	noPublic := mint("no public", []string{"api_keys", "domains", "users", "systems"})

	const id, secret = "0123456789abcdef0123456789abcdef", "Edm7STXHDbacbsytz4RGvFc51PnBdQtcU9Yo7BSSVHw"
	mac := hmac.New(sha512.New, []byte(secret))
	mac.Write([]byte(id))
	hash := hex.EncodeToString(mac.Sum(nil))
	export := `{"id":"authority-p1","name":"P","domain":"placeos.example","created_at":"2023-11-14T22:13:20+00:00"}
{"id":"user-p1","authority_id":"authority-p1","name":"Panel","email":"panel@placeos.example","sys_admin":false,"support":false,"groups":[]}
{"id":"` + id + `","name":"kiosk","scopes":["public.read"],"permissions":0,"secret":"` + hash + `","user_id":"user-p1","authority_id":"authority-p1"}
`
	const path = "/api/engine/v2/import/placeos"
	post := func(key, query, contentType, body string) (int, map[string]any) {
		t.Helper()
		req := newRequest(t, http.MethodPost, f.URL+path+query, body)
		req.Host = "localhost"
		req.Header.Set("X-API-Key", key)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		status, b, _ := send(t, req)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: body %q is not a JSON object", path, b)
		}
		return status, v
	}
	cases := []struct {
		name        string
		key, query  string
		contentType string
		body        string
		status      int
		wantError   string
	}{
		{"text/plain", f.Admin, "", "text/plain", export, http.StatusUnsupportedMediaType, "Content-Type must be text/csv"},
		{"JSON", f.Admin, "", "application/json", export, http.StatusUnsupportedMediaType, "Content-Type must be text/csv"},
		{"bad dry_run", f.Admin, "?dry_run=maybe", "application/x-ndjson", export, http.StatusBadRequest, "query parameter dry_run must be true or false"},
		{"too large", f.Admin, "", "text/csv", strings.Repeat("x", 1<<20+1), http.StatusRequestEntityTooLarge, "request body too large"},
		{"bad row", f.Admin, "", "application/x-ndjson", export + "{\"table\":\"user\"}\n", http.StatusUnprocessableEntity, "validation failed"},
		{"not an admin route for a kiosk", f.Kiosk, "", "application/x-ndjson", export, http.StatusForbidden, ""},
		{"authority rows need domains.write", keysOnly, "", "application/x-ndjson", export, http.StatusForbidden,
			"cannot import 1 row that needs scope domains.write: the calling key does not hold it"},
		{"the minting cap", noPublic, "", "application/x-ndjson", export, http.StatusForbidden,
			"key " + id + " (line 3): cannot grant scope public.read: the calling key does not hold it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, v := post(c.key, c.query, c.contentType, c.body)
			if status != c.status || !strings.Contains(v["error"].(string), c.wantError) {
				t.Errorf("status %d %v, want %d %q", status, v, c.status, c.wantError)
			}
		})
	}
	// The bad row's failure names its line.
	if _, v := post(f.Admin, "", "application/x-ndjson", export+"{\"table\":\"user\"}\n"); !strings.Contains(jsonText(v["failures"]), `"field":"line 4","reason":"user row: id is missing"`) {
		t.Errorf("bad row failures = %s", jsonText(v["failures"]))
	}
	if _, err := f.Store.GetDomain(ctx, "authority-p1"); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Fatalf("a refused import wrote the domain: %v", err)
	}

	decide := func() (allow bool, msg string) {
		t.Helper()
		body := map[string]any{"input": map[string]any{"method": "GET", "path": "/api/engine/v2/systems", "host": "placeos.example",
			"headers": map[string]string{"x-api-key": id + "." + secret}}}
		status, b, _ := send(t, newRequest(t, http.MethodPost, f.URL+"/v1/data/keyauthz/decision", body))
		var r struct {
			Result struct {
				Allow   bool   `json:"allow"`
				Message string `json:"message"`
			} `json:"result"`
		}
		if status != http.StatusOK || json.Unmarshal(b, &r) != nil {
			t.Fatalf("decision: %d %s", status, b)
		}
		return r.Result.Allow, r.Result.Message
	}
	// Asked before the import, so that a cached "unknown" would show if the import did not
	// reach the caches.
	if allow, msg := decide(); allow || msg != "unknown X-API-Key" {
		t.Fatalf("before the import: %v %q", allow, msg)
	}
	if status, v := post(f.Admin, "?dry_run=true", "application/x-ndjson", export); status != http.StatusOK || v["dry_run"] != true || v["imported"] != false {
		t.Fatalf("dry run: %d %v", status, v)
	}
	if status, v := post(f.Admin, "", "application/x-ndjson; charset=utf-8", export); status != http.StatusOK || v["imported"] != true {
		t.Fatalf("import: %d %v", status, v)
	}
	if allow, msg := decide(); !allow {
		t.Errorf("the imported key: denied (%q)", msg)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

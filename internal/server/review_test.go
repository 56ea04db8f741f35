package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestQueryErrorsEchoNoKey holds the rule that error bodies carry no key material
// (SECURITY.md): a malformed query parameter of a listing is a 400 that names the parameter,
// never its value, because a URL parameter may hold anything, a key pasted by mistake
// included.
func TestQueryErrorsEchoNoKey(t *testing.T) {
	f := newFixture(t)
	_, secret, _ := strings.Cut(f.Booking, ".")
	tests := []struct {
		path, param string
	}{
		{"/api/engine/v2/api_keys", "limit"},
		{"/api/engine/v2/api_keys", "offset"},
		{"/api/engine/v2/audit", "limit"},
		{"/api/engine/v2/audit", "offset"},
		{"/api/engine/v2/audit", "since"},
		{"/api/engine/v2/audit", "until"},
		{"/api/engine/v2/audit", "action"},
	}
	for _, tt := range tests {
		t.Run(tt.path+"?"+tt.param, func(t *testing.T) {
			req := newRequest(t, "GET", f.URL+tt.path+"?"+tt.param+"="+url.QueryEscape(f.Booking), nil)
			req.Host = "localhost"
			req.Header.Set("X-API-Key", f.Admin)
			status, body, _ := send(t, req)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", status, body)
			}
			if !strings.Contains(string(body), tt.param) {
				t.Errorf("body %s does not name the parameter %s", body, tt.param)
			}
			if strings.Contains(string(body), secret) {
				t.Errorf("body %s echoes the key", body)
			}
		})
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of a revocation during a request: the policy judges a request once its
// headers arrive, and a slow client may finish its body later. A key deleted, narrowed or
// whose user is demoted in between must not write (the store re-reads the caller in the write
// transaction, internal/badgerstore recheckCaller).

// slowRequest is a request whose body is sent in two parts over a raw connection.
type slowRequest struct {
	conn net.Conn
	br   *bufio.Reader
	rest []byte
}

// startSlow sends method path as key, with the headers (Expect: 100-continue) and the first
// half of body, then waits for the server's 100 Continue: the server sends it when the handler
// starts reading the body, that is once the policy has authorized the request and the caller
// is fixed for it. finish sends the rest.
func (w *world) startSlow(t *testing.T, method, path, key string, body any) *slowRequest {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(w.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	half := len(b) / 2
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: localhost\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", method, path, key, len(b))
	if _, err := io.WriteString(conn, head+string(b[:half])); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s %s: reading the interim response: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusContinue {
		out, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s before the body was sent, want 100 Continue (the request authorized)", method, path, resp.StatusCode, out)
	}
	return &slowRequest{conn: conn, br: br, rest: b[half:]}
}

// finish sends the rest of the body and returns the final reply.
func (r *slowRequest) finish(t *testing.T) reply {
	t.Helper()
	if _, err := r.conn.Write(r.rest); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, out, resp.Header}
}

// TestRevocationDuringTheRequest: a write authorized before its key was deleted or narrowed,
// or its user demoted, is refused when its body arrives after that, and stores nothing: a
// deleted admin key cannot finish minting an admin key, and a demoted admin's pending PATCH
// cannot re-promote it. A request that nothing changed under still writes.
func TestRevocationDuringTheRequest(t *testing.T) {
	w := newWorld(t, "")
	plainID := w.createUser(t, "Panel", false)
	mint := func(name string) map[string]any {
		return map[string]any{"name": name, "user_id": plainID, "permissions": "user", "scopes": []string{"public"}}
	}
	keyID := func(plaintext string) string { id, _, _ := strings.Cut(plaintext, "."); return id }

	t.Run("nothing changed", func(t *testing.T) {
		opsID := w.createUser(t, "Ops Steady", true)
		ops := w.keyFor(t, opsID, "ops steady", "admin", "public")
		r := w.startSlow(t, "POST", "/api/engine/v2/api_keys", ops, mint("steady")).finish(t)
		if r.status != http.StatusCreated {
			t.Fatalf("a slow request nothing changed under: %d %s, want 201", r.status, r.body)
		}
	})

	cases := []struct {
		name         string
		userSysAdmin bool
		scopes       []string
		method, path string // "{self}": the caller's user
		body         any
		revoke       func(t *testing.T, userID, key string)
		wantStatus   int
		wantErr      string
	}{
		{"a deleted admin key mints an admin key", true, []string{"public"}, "POST", "/api/engine/v2/api_keys",
			map[string]any{"name": "minted late", "user_id": "{self}", "permissions": "admin", "scopes": []string{"public"}},
			func(t *testing.T, _, key string) {
				w.admin(t, "DELETE", "/api/engine/v2/api_keys/"+keyID(key), nil, http.StatusAccepted)
			}, 401, "unknown X-API-Key"},
		{"a narrowed key mints a public key", true, []string{"public"}, "POST", "/api/engine/v2/api_keys", mint("minted narrowed"),
			func(t *testing.T, _, key string) {
				w.admin(t, "PATCH", "/api/engine/v2/api_keys/"+keyID(key), map[string]any{"scopes": []string{"api_keys"}}, http.StatusOK)
			}, 409, "the calling key or its user changed during the request; try again"},
		{"a demoted admin re-promotes itself", true, []string{"users"}, "PATCH", "/api/engine/v2/users/{self}",
			map[string]any{"sys_admin": true},
			func(t *testing.T, userID, _ string) {
				w.admin(t, "PATCH", "/api/engine/v2/users/"+userID, map[string]any{"sys_admin": false}, http.StatusOK)
			}, 409, "the calling key or its user changed during the request; try again"},
		{"a deleted user's key creates a user", true, []string{"users"}, "POST", "/api/engine/v2/users",
			map[string]any{"authority_id": w.domainID, "name": "Late Admin", "email": "late@example.com", "sys_admin": true},
			func(t *testing.T, userID, _ string) {
				w.admin(t, "DELETE", "/api/engine/v2/users/"+userID, nil, http.StatusAccepted)
			}, 401, "unknown X-API-Key"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			userID := w.createUser(t, fmt.Sprintf("Ops %d", i), tc.userSysAdmin)
			key := w.keyFor(t, userID, fmt.Sprintf("ops %d", i), "admin", tc.scopes...)
			path := strings.ReplaceAll(tc.path, "{self}", userID)
			if m, ok := tc.body.(map[string]any); ok && m["user_id"] == "{self}" {
				m["user_id"] = userID
			}
			req := w.startSlow(t, tc.method, path, key, tc.body)
			tc.revoke(t, userID, key)
			before := w.storeState(t)
			r := req.finish(t)
			wantError(t, tc.method+" "+path+" after the revocation", r, tc.wantStatus, tc.wantErr)
			w.unchanged(t, before)
		})
	}
}

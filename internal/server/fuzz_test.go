package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/internal/server"
)

// FuzzDataDecision feeds arbitrary bodies to POST /v1/data/keyauthz/decision. Whatever the
// body, the answer is a 200 decision or a 4xx JSON error, never a 500 or a panic, and no body
// can be allowed except on the anonymous health route: a fuzzer cannot forge a key.
func FuzzDataDecision(f *testing.F) {
	for _, seed := range []string{
		`{"input":{"method":"GET","path":"/api/engine/v2","host":"localhost"}}`,
		`{"input":{"method":"GET","path":"/api/engine/v2/systems/sys-1?api-key=x","host":"localhost","headers":{"x-api-key":"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}`,
		`{"input":{"method":"DELETE","path":"/api/engine/v2/systems/%2e%2e/api_keys","host":"LOCALHOST:80","headers":{"cookie":["api-key=a.b","x=y"]}}}`,
		`{"input":{"method":"GET","path":"//a/../../b/./c/?q=1#f","protocol":"websocket","headers":{"upgrade":"websocket"}}}`,
		`{"input":null}`, `{}`, `[]`, `{"input":{"headers":{"x":1}}}`, "\x00", "",
	} {
		f.Add([]byte(seed))
	}
	store, err := keys.OpenInMemory()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	if err := store.CreateDomain(f.Context(), &keys.Domain{Name: "localhost", Domain: "localhost"}); err != nil {
		f.Fatal(err)
	}
	b, err := opa.Builtin()
	if err != nil {
		f.Fatal(err)
	}
	engine, err := opa.New(f.Context(), b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	srv := server.New(server.Deps{Store: store, Engine: engine})

	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/data/keyauthz/decision", bytes.NewReader(body))
		srv.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusOK:
			var out struct {
				Result struct {
					Allow   bool   `json:"allow"`
					Message string `json:"message"`
				} `json:"result"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 with a body that is not a decision: %q", rec.Body)
			}
			if out.Result.Allow && out.Result.Message != "anonymous route" {
				t.Fatalf("allowed without a key: body %q → %s", body, rec.Body)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d without a JSON error: %q", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
	})
}

package server_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/internal/server"
)

// TestHealthStates: ok is 200; a degraded service (it decides, but refuses writes: a full
// disk) is still 200, so that load balancers keep sending it decisions, with status
// "degraded" and the reason; anything else Health reports is a 503.
func TestHealthStates(t *testing.T) {
	store, err := badgerstore.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	b, err := opa.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := opa.New(t.Context(), b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	full := keys.Errorf(keys.EINSUFFICIENT, "insufficient storage: /data has 1 bytes free, keyauthz needs 2")
	for _, c := range []struct {
		name       string
		health     error
		wantStatus int
		want       string
		wantError  string
	}{
		{"ok", nil, http.StatusOK, "ok", ""},
		{"disk full", &server.Degraded{Err: full}, http.StatusOK, "degraded", full.Error()},
		{"policy reload failed", errors.New("policy reload failed"), http.StatusServiceUnavailable, "unhealthy", "policy reload failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(server.New(server.Deps{
				Store: store, Engine: eng, Version: "test",
				Authorizer: newAuthorizer(store, eng, slog.New(slog.DiscardHandler), nil),
				Health:     func() error { return c.health },
			}))
			t.Cleanup(srv.Close)
			resp, err := http.Get(srv.URL + "/health")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Status, Error, Revision string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.wantStatus || body.Status != c.want || body.Error != c.wantError || body.Revision == "" {
				t.Errorf("GET /health: %d %+v, want %d status %q error %q and a revision", resp.StatusCode, body, c.wantStatus, c.want, c.wantError)
			}
		})
	}
}

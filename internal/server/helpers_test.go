package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
	"github.com/keyauthz/keyauthz/internal/server"
)

// fixture is a keyauthz server on loopback over a real on-disk Badger store and the built-in
// policy, seeded with the keys of the seed document's examples.
type fixture struct {
	URL   string
	Store *badgerstore.Store
	Debug *testutil.SyncBuffer // the debug log (slog JSON, level debug)

	decisionLog *testutil.SyncBuffer

	Domain, OtherDomain   *keys.Domain
	PanelUser, AdminUser  *keys.User
	Booking, Kiosk, Admin string // plaintext keys
	Other, Expired        string
	BookingKey            *keys.APIKey
}

func newSyncBuffer() *testutil.SyncBuffer { return &testutil.SyncBuffer{} }

// openStoreAndEngine opens a Badger store in a temp folder (closed when the test ends) and an
// engine on the built-in policy: what every in-process server of these tests runs on.
func openStoreAndEngine(tb testing.TB, opts ...badgerstore.Option) (*badgerstore.Store, *opa.Engine) {
	tb.Helper()
	store, err := badgerstore.Open(tb.TempDir(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	b, err := opa.Builtin()
	if err != nil {
		tb.Fatal(err)
	}
	eng, err := opa.New(tb.Context(), b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	return store, eng
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	store, eng := openStoreAndEngine(t)
	f := &fixture{Store: store, Debug: newSyncBuffer()}
	f.Domain = &keys.Domain{Name: "localhost", Domain: "localhost"}
	f.OtherDomain = &keys.Domain{Name: "other", Domain: "other.example"}
	for _, d := range []*keys.Domain{f.Domain, f.OtherDomain} {
		if err := store.CreateDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	f.PanelUser = &keys.User{AuthorityID: f.Domain.ID, Name: "panel", Email: "panel@localhost"}
	f.AdminUser = &keys.User{AuthorityID: f.Domain.ID, Name: "admin", Email: "admin@localhost", SysAdmin: true, Support: true}
	otherUser := &keys.User{AuthorityID: f.OtherDomain.ID, Name: "other", Email: "o@other.example", SysAdmin: true}
	for _, u := range []*keys.User{f.PanelUser, f.AdminUser, otherUser} {
		if err := store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(k *keys.APIKey) string {
		t.Helper()
		s, err := store.CreateKey(ctx, k)
		if err != nil {
			t.Fatalf("create key %s: %v", k.Name, err)
		}
		return string(s)
	}
	f.BookingKey = &keys.APIKey{Name: "booking panel", UserID: f.PanelUser.ID,
		Scopes: []string{"users.read", "systems.read", "control", "zones.read", "metadata.read"}}
	f.Booking = mk(f.BookingKey)
	f.Kiosk = mk(&keys.APIKey{Name: "map kiosk", UserID: f.PanelUser.ID, Scopes: []string{"public.read"}})
	f.Admin = mk(&keys.APIKey{Name: "admin", UserID: f.AdminUser.ID, Scopes: []string{"api_keys", "public"}, Permissions: keys.PermissionAdmin})
	f.Other = mk(&keys.APIKey{Name: "other", UserID: otherUser.ID, Scopes: []string{"public"}, Permissions: keys.PermissionAdmin})
	soon := time.Now().Add(time.Minute).Unix()
	f.Expired = mk(&keys.APIKey{Name: "expiring", UserID: f.PanelUser.ID, Scopes: []string{"public"}, ExpiresAt: &soon})

	logBuf := newSyncBuffer()
	logger := slog.New(slog.NewJSONHandler(f.Debug, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := server.New(server.Deps{
		Logger:      logger,
		Store:       store,
		Engine:      eng,
		Authorizer:  newAuthorizer(store, eng, logger, func() time.Time { return time.Now().Add(time.Hour) }),
		DecisionLog: server.NewDecisionLogger(logBuf),
		Version:     "test",
	})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	f.URL = ts.URL
	f.decisionLog = logBuf
	return f
}

// newAuthorizer is the credential path as keyauthz serve builds it (cmd/keyauthz newAuthorizer):
// authz.New with the default caches, decision cache included, and a usage recorder, so that
// the server's tests run the production wiring. now is the Authorizer's clock (nil: time.Now);
// the fixture runs it an hour ahead, so that the "expiring" key is expired.
func newAuthorizer(store *badgerstore.Store, eng *opa.Engine, logger *slog.Logger, now func() time.Time) *authz.Authorizer {
	o := authz.DefaultOptions()
	o.Usage = keys.NewUsageRecorder(store, logger)
	o.Logger = logger
	o.Now = now
	return authz.New(store, eng, o)
}

func (f *fixture) DecisionLog() string { return f.decisionLog.String() }

// send performs req and returns the status, body and headers; it never follows redirects.
func send(t *testing.T, req *http.Request) (int, []byte, http.Header) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

func newRequest(t *testing.T, method, url string, body any) *http.Request {
	t.Helper()
	rd, err := testutil.Body(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(t.Context()), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

package badgerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// testNow is the fixed clock of the store tests.
var testNow = time.Unix(1_800_000_000, 0)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenInMemory(WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fixture is one domain with a plain user and an admin user.
type fixture struct {
	domain      *keys.Domain
	user, admin *keys.User
}

func seed(t testing.TB, s *Store, host string) fixture {
	t.Helper()
	ctx := t.Context()
	f := fixture{
		domain: &keys.Domain{Name: "Site " + host, Domain: host},
		user:   &keys.User{Name: "Plain", Email: "plain@" + host, Groups: []string{"zone-1"}},
		admin:  &keys.User{Name: "Admin", Email: "admin@" + host, SysAdmin: true},
	}
	if err := s.CreateDomain(ctx, f.domain); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*keys.User{f.user, f.admin} {
		u.AuthorityID = f.domain.ID
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func mustCreateKey(t testing.TB, s *Store, k *keys.APIKey) string {
	t.Helper()
	pt, err := s.CreateKey(t.Context(), k)
	if err != nil {
		t.Fatalf("CreateKey(%q): %v", k.Name, err)
	}
	return string(pt)
}

func ptr[T any](v T) *T { return &v }

// snapshot is everything stored, for "nothing changed" assertions.
func snapshot(t *testing.T, s *Store) string {
	t.Helper()
	ks, _, err := s.ListKeys(t.Context(), keys.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	users, _ := s.ListUsers(t.Context(), "")
	domains, _ := s.ListDomains(t.Context())
	d, u, k := s.Counts(t.Context())
	b, err := json.MarshalIndent([]any{d, u, k, ks, users, domains}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStore_OnDiskReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := seed(t, s, "example.com")
	k := &keys.APIKey{Name: "kiosk", Scopes: []string{"public.read"}, UserID: f.user.ID}
	pt := mustCreateKey(t, s, k)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetKey(t.Context(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got); diff != "" {
		t.Errorf("key after reopen (-want +got):\n%s", diff)
	}
	if _, err := s.Authenticate(t.Context(), pt, testNow); err != nil {
		t.Errorf("Authenticate after reopen: %v", err)
	}
	if d, u, n := s.Counts(t.Context()); d != 1 || u != 2 || n != 1 {
		t.Errorf("Counts after reopen = %d, %d, %d; want 1, 2, 1", d, u, n)
	}
}

func TestOpen_FolderInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(dir)
	want := fmt.Sprintf("data folder %s is in use by another keyauthz process", dir)
	if err == nil || err.Error() != want {
		t.Fatalf("second Open: %v, want %q", err, want)
	}
}

func TestCreateKey(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	k := &keys.APIKey{
		Name: "  Panel 1  ", Description: "lobby", Scopes: []string{"systems.READ", "control"},
		UserID: f.user.ID, AuthorityID: "authority-ignored", ExpiresAt: ptr(testNow.Unix() + 60),
	}
	pt := mustCreateKey(t, s, k)
	want := &keys.APIKey{
		ID: k.ID, Name: "Panel 1", Description: "lobby", Scopes: []string{"systems.read", "control"},
		Permissions: keys.PermissionUser, UserID: f.user.ID, AuthorityID: f.domain.ID,
		CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(), ExpiresAt: ptr(testNow.Unix() + 60),
		AllowedCIDRs: []string{},
	}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("created key (-want +got):\n%s", diff)
	}
	if id, _, ok := keys.ParseKey(pt); !ok || id != k.ID {
		t.Errorf("plaintext %q does not carry id %s", keys.Secret(pt), k.ID)
	}
	got, err := s.GetKey(t.Context(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetKey (-want +got):\n%s", diff)
	}
	stored, _, _, err := s.KeyForAuth(t.Context(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, secret, _ := keys.ParseKey(pt); stored.Hash != keys.HashKey(k.ID, secret) {
		t.Errorf("stored hash %q is not HMAC(secret, id)", stored.Hash)
	}
}

func TestCreateKey_Validation(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	mustCreateKey(t, s, &keys.APIKey{Name: "Taken Name", UserID: f.user.ID})
	other := seed(t, s, "other.example.com")
	before := snapshot(t, s)

	tests := []struct {
		note     string
		key      keys.APIKey
		code     string
		failures []keys.Failure
	}{
		{"three-part scope", keys.APIKey{Name: "x", UserID: f.user.ID, Scopes: []string{"a.b.c"}}, keys.EINVALID, nil},
		{"unknown suffix", keys.APIKey{Name: "x", UserID: f.user.ID, Scopes: []string{"systems.exec"}}, keys.EINVALID, nil},
		{"name required", keys.APIKey{Name: "   ", UserID: f.user.ID}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "name", Reason: keys.ReasonRequired}}},
		{"duplicate name, other case", keys.APIKey{Name: "taken NAME", UserID: f.admin.ID}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "name", Reason: keys.ReasonTaken}}},
		{"unknown user", keys.APIKey{Name: "x", UserID: "user-nope"}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "user_id", Reason: keys.ReasonMissing}}},
		{"user required", keys.APIKey{Name: "x"}, keys.EUNPROCESSABLE, []keys.Failure{{Field: "user_id", Reason: keys.ReasonRequired}}},
		{"permissions above the user's", keys.APIKey{Name: "x", UserID: f.user.ID, Permissions: keys.PermissionAdmin},
			keys.EUNPROCESSABLE, []keys.Failure{{Field: "permissions", Reason: "exceeds the user's own level (user)"}}},
		{"admin_support above admin", keys.APIKey{Name: "x", UserID: f.admin.ID, Permissions: keys.PermissionAdminSupport},
			keys.EUNPROCESSABLE, []keys.Failure{{Field: "permissions", Reason: "exceeds the user's own level (admin)"}}},
		{"invalid permissions", keys.APIKey{Name: "x", UserID: f.admin.ID, Permissions: "root"}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "permissions", Reason: "is invalid (want user, support, admin or admin_support)"}}},
		{"expires_at now", keys.APIKey{Name: "x", UserID: f.user.ID, ExpiresAt: ptr(testNow.Unix())}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "expires_at", Reason: keys.ReasonFuture}}},
		{"expires_at past", keys.APIKey{Name: "x", UserID: f.user.ID, ExpiresAt: ptr(int64(1))}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "expires_at", Reason: keys.ReasonFuture}}},
		{"name too long", keys.APIKey{Name: strings.Repeat("ü", 256), UserID: f.user.ID}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "name", Reason: keys.ReasonTooLong}}},
		{"invalid UTF-8 name", keys.APIKey{Name: "a\xffb", UserID: f.user.ID}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "name", Reason: keys.ReasonInvalid}}},
		{"all at once", keys.APIKey{Name: "", ExpiresAt: ptr(int64(1)), Permissions: "x"}, keys.EUNPROCESSABLE,
			[]keys.Failure{{Field: "name", Reason: keys.ReasonRequired}, {Field: "expires_at", Reason: keys.ReasonFuture},
				{Field: "user_id", Reason: keys.ReasonRequired},
				{Field: "permissions", Reason: "is invalid (want user, support, admin or admin_support)"}}},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			k := tt.key
			pt, err := s.CreateKey(t.Context(), &k)
			if got := keys.ErrorCode(err); got != tt.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tt.code)
			}
			if pt != "" {
				t.Error("plaintext returned on failure")
			}
			if diff := cmp.Diff(tt.failures, keys.ErrorFailures(err)); diff != "" {
				t.Errorf("failures (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.key, k); diff != "" {
				t.Errorf("input changed on failure (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
				t.Errorf("store changed (-before +after):\n%s", diff)
			}
		})
	}

	// Accepted: the same name in another domain, a unicode name at the limit, a capped level.
	for _, k := range []*keys.APIKey{
		{Name: "taken name", UserID: other.user.ID},
		{Name: strings.Repeat("ü", 255), UserID: f.user.ID},
		{Name: "日本語のキー 🔑", UserID: f.admin.ID, Permissions: keys.PermissionAdmin, Scopes: []string{}},
	} {
		mustCreateKey(t, s, k)
	}
}

func TestUpdateKey(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	k := &keys.APIKey{Name: "one", UserID: f.admin.ID, ExpiresAt: ptr(testNow.Unix() + 10)}
	mustCreateKey(t, s, k)
	mustCreateKey(t, s, &keys.APIKey{Name: "two", UserID: f.admin.ID})

	t.Run("invalid", func(t *testing.T) {
		before := snapshot(t, s)
		for _, u := range []keys.KeyUpdate{
			{Name: ptr("TWO")},
			{Scopes: &[]string{"a.b.c"}},
			{Permissions: ptr(keys.PermissionAdminSupport)},
			{ExpiresAt: keys.NullableInt64{Set: true, Value: ptr(int64(5))}},
		} {
			if _, err := s.UpdateKey(t.Context(), k.ID, u); err == nil {
				t.Errorf("UpdateKey(%+v) succeeded", u)
			}
		}
		if _, err := s.UpdateKey(t.Context(), "nope", keys.KeyUpdate{}); keys.ErrorCode(err) != keys.ENOTFOUND {
			t.Errorf("unknown id: %v", err)
		}
		if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
			t.Errorf("store changed (-before +after):\n%s", diff)
		}
	})

	t.Run("valid", func(t *testing.T) {
		got, err := s.UpdateKey(t.Context(), k.ID, keys.KeyUpdate{
			Name: ptr("Renamed"), Description: ptr("d"), Scopes: &[]string{"users.Write"},
			Permissions: ptr(keys.PermissionAdmin), ExpiresAt: keys.NullableInt64{Set: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := *k
		want.Name, want.Description, want.Scopes, want.Permissions, want.ExpiresAt =
			"Renamed", "d", []string{"users.write"}, keys.PermissionAdmin, nil
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("updated (-want +got):\n%s", diff)
		}
		// The old name is free again; the new one is taken.
		mustCreateKey(t, s, &keys.APIKey{Name: "ONE", UserID: f.admin.ID})
		_, err = s.CreateKey(t.Context(), &keys.APIKey{Name: "renamed", UserID: f.admin.ID})
		if diff := cmp.Diff([]keys.Failure{{Field: "name", Reason: keys.ReasonTaken}}, keys.ErrorFailures(err)); diff != "" {
			t.Errorf("name index not moved (-want +got):\n%s", diff)
		}
	})
}

func TestCascades(t *testing.T) {
	s := newStore(t)
	a := seed(t, s, "a.example.com")
	b := seed(t, s, "b.example.com")
	var keyIDs = map[string][]string{}
	for _, u := range []*keys.User{a.user, a.admin, b.user} {
		for i := range 3 {
			k := &keys.APIKey{Name: fmt.Sprintf("%s-k%d", u.Name, i), UserID: u.ID}
			mustCreateKey(t, s, k)
			keyIDs[u.ID] = append(keyIDs[u.ID], k.ID)
		}
	}
	var changes []keys.Change
	s.OnChange(func(c keys.Change) { changes = append(changes, c) })

	if err := s.DeleteUser(t.Context(), a.user.ID); err != nil {
		t.Fatal(err)
	}
	want := []keys.Change{{Kind: keys.KindUser, ID: a.user.ID}}
	for _, id := range keyIDs[a.user.ID] {
		want = append(want, keys.Change{Kind: keys.KindKey, ID: id})
	}
	sortChanges := cmpopts.SortSlices(func(x, y keys.Change) bool { return x.Kind+x.ID < y.Kind+y.ID })
	if diff := cmp.Diff(want, changes, sortChanges); diff != "" {
		t.Errorf("DeleteUser changes (-want +got):\n%s", diff)
	}
	if d, u, k := s.Counts(t.Context()); d != 2 || u != 3 || k != 6 {
		t.Errorf("Counts = %d, %d, %d; want 2, 3, 6", d, u, k)
	}

	changes = nil
	if err := s.DeleteDomain(t.Context(), a.domain.ID); err != nil {
		t.Fatal(err)
	}
	want = []keys.Change{{Kind: keys.KindDomain, ID: a.domain.ID}, {Kind: keys.KindUser, ID: a.admin.ID}}
	for _, id := range keyIDs[a.admin.ID] {
		want = append(want, keys.Change{Kind: keys.KindKey, ID: id})
	}
	if diff := cmp.Diff(want, changes, sortChanges); diff != "" {
		t.Errorf("DeleteDomain changes (-want +got):\n%s", diff)
	}
	if d, u, k := s.Counts(t.Context()); d != 1 || u != 2 || k != 3 {
		t.Errorf("Counts = %d, %d, %d; want 1, 2, 3", d, u, k)
	}
	for _, id := range append(keyIDs[a.user.ID], keyIDs[a.admin.ID]...) {
		if _, err := s.GetKey(t.Context(), id); keys.ErrorCode(err) != keys.ENOTFOUND {
			t.Errorf("key %s survived: %v", id, err)
		}
	}
	if _, err := s.DomainByHost(t.Context(), "a.example.com"); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Errorf("host index survived: %v", err)
	}
	// Indexes are gone too: the host and the key names can be reused.
	c := seed(t, s, "a.example.com")
	mustCreateKey(t, s, &keys.APIKey{Name: "Plain-k0", UserID: c.user.ID})
	if got, _ := s.ListUsers(t.Context(), a.domain.ID); len(got) != 0 {
		t.Errorf("users of the deleted domain: %+v", got)
	}
	if _, n, _ := s.ListKeys(t.Context(), keys.KeyFilter{AuthorityID: b.domain.ID}); n != 3 {
		t.Errorf("domain b keys = %d, want 3", n)
	}
	for _, err := range []error{s.DeleteDomain(t.Context(), "nope"), s.DeleteUser(t.Context(), "nope"),
		s.DeleteKey(t.Context(), "nope")} {
		if keys.ErrorCode(err) != keys.ENOTFOUND {
			t.Errorf("delete unknown: %v", err)
		}
	}
}

func TestDomainsAndUsers(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	d := &keys.Domain{Name: " Main ", Domain: "HTTPS://Example.com:8443/app", Description: "x"}
	if err := s.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	if d.Domain != "example.com" || d.Name != "Main" || !strings.HasPrefix(d.ID, "authority-") {
		t.Errorf("created domain = %+v", d)
	}
	got, err := s.DomainByHost(ctx, "EXAMPLE.com:80")
	if err != nil || got.ID != d.ID {
		t.Errorf("DomainByHost = %+v, %v", got, err)
	}

	before := snapshot(t, s)
	for _, tt := range []struct {
		d    keys.Domain
		want []keys.Failure
	}{
		{keys.Domain{Name: "dup", Domain: "example.COM"}, []keys.Failure{{Field: "domain", Reason: keys.ReasonTaken}}},
		{keys.Domain{Name: "", Domain: ""}, []keys.Failure{{Field: "name", Reason: keys.ReasonRequired}, {Field: "domain", Reason: keys.ReasonRequired}}},
		{keys.Domain{Name: "bad", Domain: "exa mple"}, []keys.Failure{{Field: "domain", Reason: keys.ReasonInvalid}}},
	} {
		err := s.CreateDomain(ctx, &tt.d)
		if diff := cmp.Diff(tt.want, keys.ErrorFailures(err)); diff != "" || keys.ErrorCode(err) != keys.EUNPROCESSABLE {
			t.Errorf("CreateDomain(%+v): %v (-want +got):\n%s", tt.d, err, diff)
		}
	}
	for _, tt := range []struct {
		u    keys.User
		want []keys.Failure
	}{
		{keys.User{Name: "n", Email: "n@x"}, []keys.Failure{{Field: "authority_id", Reason: keys.ReasonRequired}}},
		{keys.User{Name: "n", Email: "n@x", AuthorityID: "authority-nope"}, []keys.Failure{{Field: "authority_id", Reason: keys.ReasonMissing}}},
		{keys.User{Name: "", Email: "no-at", AuthorityID: d.ID}, []keys.Failure{{Field: "name", Reason: keys.ReasonRequired}, {Field: "email", Reason: keys.ReasonInvalid}}},
	} {
		err := s.CreateUser(ctx, &tt.u)
		if diff := cmp.Diff(tt.want, keys.ErrorFailures(err)); diff != "" || keys.ErrorCode(err) != keys.EUNPROCESSABLE {
			t.Errorf("CreateUser(%+v): %v (-want +got):\n%s", tt.u, err, diff)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
		t.Errorf("store changed (-before +after):\n%s", diff)
	}

	// Update: host moves its index; authority cannot change.
	other := &keys.Domain{Name: "Other", Domain: "other.com"}
	if err := s.CreateDomain(ctx, other); err != nil {
		t.Fatal(err)
	}
	upd := *d
	upd.Domain = "other.com"
	if err := s.UpdateDomain(ctx, &upd); keys.ErrorCode(err) != keys.EUNPROCESSABLE {
		t.Errorf("UpdateDomain to a taken host: %v", err)
	}
	upd.Domain = "new.example.com"
	if err := s.UpdateDomain(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DomainByHost(ctx, "example.com"); keys.ErrorCode(err) != keys.ENOTFOUND {
		t.Errorf("old host still resolves: %v", err)
	}
	if got, err := s.DomainByHost(ctx, "new.example.com"); err != nil || got.CreatedAt != d.CreatedAt {
		t.Errorf("new host: %+v, %v", got, err)
	}

	u := &keys.User{Name: "U", Email: "u@x", AuthorityID: d.ID}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if u.Groups == nil || !strings.HasPrefix(u.ID, "user-") {
		t.Errorf("created user = %+v", u)
	}
	moved := *u
	moved.AuthorityID = other.ID
	if err := s.UpdateUser(ctx, &moved); keys.ErrorCode(err) != keys.EUNPROCESSABLE {
		t.Errorf("UpdateUser changing authority: %v", err)
	}
	promoted := *u
	promoted.AuthorityID, promoted.SysAdmin = "", true
	if err := s.UpdateUser(ctx, &promoted); err != nil || promoted.AuthorityID != d.ID {
		t.Errorf("UpdateUser: %+v, %v", promoted, err)
	}
	list, err := s.ListUsers(ctx, d.ID)
	if err != nil || len(list) != 1 || !list[0].SysAdmin {
		t.Errorf("ListUsers = %+v, %v", list, err)
	}
	domains, _ := s.ListDomains(ctx)
	if len(domains) != 2 || domains[0].Name != "Main" {
		t.Errorf("ListDomains = %+v", domains)
	}
}

func TestListKeys(t *testing.T) {
	s := newStore(t)
	a := seed(t, s, "a.example.com")
	b := seed(t, s, "b.example.com")
	for _, k := range []*keys.APIKey{
		{Name: "charlie", UserID: a.user.ID},
		{Name: "Alpha", UserID: a.user.ID, Description: "lobby panel"},
		{Name: "bravo", UserID: a.admin.ID},
		{Name: "delta", UserID: b.user.ID, Description: "LOBBY"},
	} {
		mustCreateKey(t, s, k)
	}
	names := func(ks []*keys.APIKey) (out []string) {
		for _, k := range ks {
			if k.Hash != "" {
				t.Errorf("listed key %s carries its hash", k.ID)
			}
			out = append(out, k.Name)
		}
		return out
	}
	tests := []struct {
		f     keys.KeyFilter
		want  []string
		total int
	}{
		{keys.KeyFilter{}, []string{"Alpha", "bravo", "charlie", "delta"}, 4},
		{keys.KeyFilter{AuthorityID: a.domain.ID}, []string{"Alpha", "bravo", "charlie"}, 3},
		{keys.KeyFilter{Q: "Lobby"}, []string{"Alpha", "delta"}, 2},
		{keys.KeyFilter{Q: "AV"}, []string{"bravo"}, 1},
		{keys.KeyFilter{Limit: 2, Offset: 1}, []string{"bravo", "charlie"}, 4},
		{keys.KeyFilter{Limit: 2, Offset: 10}, nil, 4},
		{keys.KeyFilter{AuthorityID: "authority-nope"}, nil, 0},
	}
	for _, tt := range tests {
		got, total, err := s.ListKeys(t.Context(), tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, names(got)); diff != "" || total != tt.total {
			t.Errorf("ListKeys(%+v) total %d want %d (-want +got):\n%s", tt.f, total, tt.total, diff)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	valid := mustCreateKey(t, s, &keys.APIKey{Name: "valid", UserID: f.user.ID, Scopes: []string{"public"}})
	expiring := mustCreateKey(t, s, &keys.APIKey{Name: "expiring", UserID: f.user.ID, ExpiresAt: ptr(testNow.Unix() + 100)})
	id, secret, _ := keys.ParseKey(valid)
	last := secret[42:]
	wrong := id + "." + secret[:42] + map[bool]string{true: "A", false: "E"}[last == "E"]
	unknownID := strings.Repeat("0", 32) + "." + secret

	tests := []struct {
		note string
		key  string
		now  time.Time
		want error
	}{
		{"valid", valid, testNow, nil},
		{"expiring, before", expiring, testNow.Add(99 * time.Second), nil},
		{"expiring, at expires_at", expiring, testNow.Add(100 * time.Second), keys.ErrExpiredKey},
		{"expiring, after", expiring, testNow.Add(time.Hour), keys.ErrExpiredKey},
		{"malformed", "not-a-key", testNow, keys.ErrUnknownKey},
		{"empty", "", testNow, keys.ErrUnknownKey},
		{"wrong secret", wrong, testNow, keys.ErrUnknownKey},
		{"secret plus NUL", valid + "\x00", testNow, keys.ErrUnknownKey},
		{"unknown id", unknownID, testNow, keys.ErrUnknownKey},
		{"uppercase id", strings.ToUpper(id) + "." + secret, testNow, keys.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			res, err := s.Authenticate(t.Context(), tt.key, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				if keys.ErrorCode(err) != keys.EUNAUTHORIZED {
					t.Errorf("code = %s", keys.ErrorCode(err))
				}
				return
			}
			if res.Key.Hash != "" || res.User.ID != f.user.ID || res.Domain.ID != f.domain.ID {
				t.Errorf("result = key %+v user %+v domain %+v", res.Key, res.User, res.Domain)
			}
		})
	}

	// A deleted key stops working at once.
	if err := s.DeleteKey(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(t.Context(), valid, testNow); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("deleted key: %v", err)
	}
}

func TestConcurrentKeys(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	const workers, perWorker = 8, 25
	var (
		mu   sync.Mutex
		kept = map[string]string{} // id -> plaintext
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := &keys.APIKey{Name: fmt.Sprintf("w%d-k%d", w, i), UserID: f.user.ID}
				pt, err := s.CreateKey(t.Context(), k)
				if err != nil {
					t.Error(err)
					return
				}
				// Every third key is deleted again; all workers also race on one shared name.
				if i%3 == 0 {
					if err := s.DeleteKey(t.Context(), k.ID); err != nil {
						t.Error(err)
					}
					continue
				}
				mu.Lock()
				kept[k.ID] = string(pt)
				mu.Unlock()
			}
			shared := &keys.APIKey{Name: "Shared", UserID: f.user.ID}
			if pt, err := s.CreateKey(t.Context(), shared); err == nil {
				mu.Lock()
				kept[shared.ID] = string(pt)
				mu.Unlock()
			} else if diff := cmp.Diff([]keys.Failure{{Field: "name", Reason: keys.ReasonTaken}}, keys.ErrorFailures(err)); diff != "" {
				t.Errorf("shared name: %v", err)
			}
		})
	}
	wg.Wait()

	list, total, err := s.ListKeys(t.Context(), keys.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, k := range list {
		listed = append(listed, k.ID)
	}
	var want []string
	for id := range kept {
		want = append(want, id)
	}
	slices.Sort(listed)
	slices.Sort(want)
	if diff := cmp.Diff(want, listed); diff != "" {
		t.Errorf("listed ids (-want +got):\n%s", diff)
	}
	wantN := workers*(perWorker-(perWorker+2)/3) + 1
	if _, _, n := s.Counts(t.Context()); n != wantN || total != wantN || len(kept) != wantN {
		t.Errorf("Counts = %d, total = %d, kept = %d; want %d", n, total, len(kept), wantN)
	}
	for id, pt := range kept {
		if res, err := s.Authenticate(t.Context(), pt, testNow); err != nil || res.Key.ID != id {
			t.Errorf("Authenticate(%s): %v", id, err)
		}
	}
	if _, n, _ := s.ListKeys(t.Context(), keys.KeyFilter{AuthorityID: f.domain.ID}); n != wantN {
		t.Errorf("domain index has %d keys, want %d", n, wantN)
	}
}

func TestConcurrentCascade(t *testing.T) {
	// Creating keys while their user is deleted must never leave a key behind.
	s := newStore(t)
	f := seed(t, s, "example.com")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				_, err := s.CreateKey(t.Context(), &keys.APIKey{Name: fmt.Sprintf("%d-%d", w, i), UserID: f.user.ID})
				if err != nil && keys.ErrorCode(err) != keys.EUNPROCESSABLE {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		time.Sleep(time.Millisecond)
		if err := s.DeleteUser(t.Context(), f.user.ID); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	if _, n, _ := s.ListKeys(t.Context(), keys.KeyFilter{}); n != 0 {
		t.Errorf("%d keys outlived their user", n)
	}
	if _, _, k := s.Counts(t.Context()); k != 0 {
		t.Errorf("Counts keys = %d, want 0", k)
	}
}

func BenchmarkCreateKeyDisk(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := seed(b, s, "example.com")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.CreateKey(b.Context(), &keys.APIKey{Name: fmt.Sprintf("k%d", i), UserID: f.user.ID}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	s := newStore(b)
	f := seed(b, s, "example.com")
	pt := mustCreateKey(b, s, &keys.APIKey{Name: "bench", UserID: f.user.ID})
	for i := range 1000 { // a few neighbours so the lookup is not trivially cached
		mustCreateKey(b, s, &keys.APIKey{Name: fmt.Sprintf("k%d", i), UserID: f.user.ID})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authenticate(b.Context(), pt, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

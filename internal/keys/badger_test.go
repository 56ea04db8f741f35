package keys

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
	domain      *Domain
	user, admin *User
}

func seed(t testing.TB, s *Store, host string) fixture {
	t.Helper()
	ctx := t.Context()
	f := fixture{
		domain: &Domain{Name: "Site " + host, Domain: host},
		user:   &User{Name: "Plain", Email: "plain@" + host, Groups: []string{"zone-1"}},
		admin:  &User{Name: "Admin", Email: "admin@" + host, SysAdmin: true},
	}
	if err := s.CreateDomain(ctx, f.domain); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*User{f.user, f.admin} {
		u.AuthorityID = f.domain.ID
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func mustCreateKey(t testing.TB, s *Store, k *APIKey) string {
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
	keys, _, err := s.ListKeys(t.Context(), KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	users, _ := s.ListUsers(t.Context(), "")
	domains, _ := s.ListDomains(t.Context())
	d, u, k := s.Counts(t.Context())
	b, err := json.MarshalIndent([]any{d, u, k, keys, users, domains}, "", " ")
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
	k := &APIKey{Name: "kiosk", Scopes: []string{"public.read"}, UserID: f.user.ID}
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
	k := &APIKey{
		Name: "  Panel 1  ", Description: "lobby", Scopes: []string{"systems.READ", "control"},
		UserID: f.user.ID, AuthorityID: "authority-ignored", ExpiresAt: ptr(testNow.Unix() + 60),
	}
	pt := mustCreateKey(t, s, k)
	want := &APIKey{
		ID: k.ID, Name: "Panel 1", Description: "lobby", Scopes: []string{"systems.read", "control"},
		Permissions: PermissionUser, UserID: f.user.ID, AuthorityID: f.domain.ID,
		CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(), ExpiresAt: ptr(testNow.Unix() + 60),
	}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("created key (-want +got):\n%s", diff)
	}
	if id, _, ok := ParseKey(pt); !ok || id != k.ID {
		t.Errorf("plaintext %q does not carry id %s", Secret(pt), k.ID)
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
	if _, secret, _ := ParseKey(pt); stored.Hash != HashKey(k.ID, secret) {
		t.Errorf("stored hash %q is not HMAC(secret, id)", stored.Hash)
	}
}

func TestCreateKey_Validation(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	mustCreateKey(t, s, &APIKey{Name: "Taken Name", UserID: f.user.ID})
	other := seed(t, s, "other.example.com")
	before := snapshot(t, s)

	tests := []struct {
		note     string
		key      APIKey
		code     string
		failures []Failure
	}{
		{"three-part scope", APIKey{Name: "x", UserID: f.user.ID, Scopes: []string{"a.b.c"}}, EINVALID, nil},
		{"unknown suffix", APIKey{Name: "x", UserID: f.user.ID, Scopes: []string{"systems.exec"}}, EINVALID, nil},
		{"name required", APIKey{Name: "   ", UserID: f.user.ID}, EUNPROCESSABLE,
			[]Failure{{"name", reasonRequired}}},
		{"duplicate name, other case", APIKey{Name: "taken NAME", UserID: f.admin.ID}, EUNPROCESSABLE,
			[]Failure{{"name", reasonTaken}}},
		{"unknown user", APIKey{Name: "x", UserID: "user-nope"}, EUNPROCESSABLE,
			[]Failure{{"user_id", reasonMissing}}},
		{"user required", APIKey{Name: "x"}, EUNPROCESSABLE, []Failure{{"user_id", reasonRequired}}},
		{"permissions above the user's", APIKey{Name: "x", UserID: f.user.ID, Permissions: PermissionAdmin},
			EUNPROCESSABLE, []Failure{{"permissions", "exceeds the user's own level (user)"}}},
		{"admin_support above admin", APIKey{Name: "x", UserID: f.admin.ID, Permissions: PermissionAdminSupport},
			EUNPROCESSABLE, []Failure{{"permissions", "exceeds the user's own level (admin)"}}},
		{"invalid permissions", APIKey{Name: "x", UserID: f.admin.ID, Permissions: "root"}, EUNPROCESSABLE,
			[]Failure{{"permissions", "is invalid (want user, support, admin or admin_support)"}}},
		{"expires_at now", APIKey{Name: "x", UserID: f.user.ID, ExpiresAt: ptr(testNow.Unix())}, EUNPROCESSABLE,
			[]Failure{{"expires_at", reasonFuture}}},
		{"expires_at past", APIKey{Name: "x", UserID: f.user.ID, ExpiresAt: ptr(int64(1))}, EUNPROCESSABLE,
			[]Failure{{"expires_at", reasonFuture}}},
		{"name too long", APIKey{Name: strings.Repeat("ü", 256), UserID: f.user.ID}, EUNPROCESSABLE,
			[]Failure{{"name", reasonTooLong}}},
		{"invalid UTF-8 name", APIKey{Name: "a\xffb", UserID: f.user.ID}, EUNPROCESSABLE,
			[]Failure{{"name", reasonInvalid}}},
		{"all at once", APIKey{Name: "", ExpiresAt: ptr(int64(1)), Permissions: "x"}, EUNPROCESSABLE,
			[]Failure{{"name", reasonRequired}, {"expires_at", reasonFuture}, {"user_id", reasonRequired},
				{"permissions", "is invalid (want user, support, admin or admin_support)"}}},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			k := tt.key
			pt, err := s.CreateKey(t.Context(), &k)
			if got := ErrorCode(err); got != tt.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tt.code)
			}
			if pt != "" {
				t.Error("plaintext returned on failure")
			}
			if diff := cmp.Diff(tt.failures, ErrorFailures(err)); diff != "" {
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
	for _, k := range []*APIKey{
		{Name: "taken name", UserID: other.user.ID},
		{Name: strings.Repeat("ü", 255), UserID: f.user.ID},
		{Name: "日本語のキー 🔑", UserID: f.admin.ID, Permissions: PermissionAdmin, Scopes: []string{}},
	} {
		mustCreateKey(t, s, k)
	}
}

func TestUpdateKey(t *testing.T) {
	s := newStore(t)
	f := seed(t, s, "example.com")
	k := &APIKey{Name: "one", UserID: f.admin.ID, ExpiresAt: ptr(testNow.Unix() + 10)}
	mustCreateKey(t, s, k)
	mustCreateKey(t, s, &APIKey{Name: "two", UserID: f.admin.ID})

	t.Run("invalid", func(t *testing.T) {
		before := snapshot(t, s)
		for _, u := range []KeyUpdate{
			{Name: ptr("TWO")},
			{Scopes: &[]string{"a.b.c"}},
			{Permissions: ptr(PermissionAdminSupport)},
			{ExpiresAt: NullableInt64{Set: true, Value: ptr(int64(5))}},
		} {
			if _, err := s.UpdateKey(t.Context(), k.ID, u); err == nil {
				t.Errorf("UpdateKey(%+v) succeeded", u)
			}
		}
		if _, err := s.UpdateKey(t.Context(), "nope", KeyUpdate{}); ErrorCode(err) != ENOTFOUND {
			t.Errorf("unknown id: %v", err)
		}
		if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
			t.Errorf("store changed (-before +after):\n%s", diff)
		}
	})

	t.Run("valid", func(t *testing.T) {
		got, err := s.UpdateKey(t.Context(), k.ID, KeyUpdate{
			Name: ptr("Renamed"), Description: ptr("d"), Scopes: &[]string{"users.Write"},
			Permissions: ptr(PermissionAdmin), ExpiresAt: NullableInt64{Set: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := *k
		want.Name, want.Description, want.Scopes, want.Permissions, want.ExpiresAt =
			"Renamed", "d", []string{"users.write"}, PermissionAdmin, nil
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("updated (-want +got):\n%s", diff)
		}
		// The old name is free again; the new one is taken.
		mustCreateKey(t, s, &APIKey{Name: "ONE", UserID: f.admin.ID})
		_, err = s.CreateKey(t.Context(), &APIKey{Name: "renamed", UserID: f.admin.ID})
		if diff := cmp.Diff([]Failure{{"name", reasonTaken}}, ErrorFailures(err)); diff != "" {
			t.Errorf("name index not moved (-want +got):\n%s", diff)
		}
	})
}

func TestCascades(t *testing.T) {
	s := newStore(t)
	a := seed(t, s, "a.example.com")
	b := seed(t, s, "b.example.com")
	var keyIDs = map[string][]string{}
	for _, u := range []*User{a.user, a.admin, b.user} {
		for i := range 3 {
			k := &APIKey{Name: fmt.Sprintf("%s-k%d", u.Name, i), UserID: u.ID}
			mustCreateKey(t, s, k)
			keyIDs[u.ID] = append(keyIDs[u.ID], k.ID)
		}
	}
	var changes []Change
	s.OnChange(func(c Change) { changes = append(changes, c) })

	if err := s.DeleteUser(t.Context(), a.user.ID); err != nil {
		t.Fatal(err)
	}
	want := []Change{{KindUser, a.user.ID}}
	for _, id := range keyIDs[a.user.ID] {
		want = append(want, Change{KindKey, id})
	}
	sortChanges := cmpopts.SortSlices(func(x, y Change) bool { return x.Kind+x.ID < y.Kind+y.ID })
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
	want = []Change{{KindDomain, a.domain.ID}, {KindUser, a.admin.ID}}
	for _, id := range keyIDs[a.admin.ID] {
		want = append(want, Change{KindKey, id})
	}
	if diff := cmp.Diff(want, changes, sortChanges); diff != "" {
		t.Errorf("DeleteDomain changes (-want +got):\n%s", diff)
	}
	if d, u, k := s.Counts(t.Context()); d != 1 || u != 2 || k != 3 {
		t.Errorf("Counts = %d, %d, %d; want 1, 2, 3", d, u, k)
	}
	for _, id := range append(keyIDs[a.user.ID], keyIDs[a.admin.ID]...) {
		if _, err := s.GetKey(t.Context(), id); ErrorCode(err) != ENOTFOUND {
			t.Errorf("key %s survived: %v", id, err)
		}
	}
	if _, err := s.DomainByHost(t.Context(), "a.example.com"); ErrorCode(err) != ENOTFOUND {
		t.Errorf("host index survived: %v", err)
	}
	// Indexes are gone too: the host and the key names can be reused.
	c := seed(t, s, "a.example.com")
	mustCreateKey(t, s, &APIKey{Name: "Plain-k0", UserID: c.user.ID})
	if got, _ := s.ListUsers(t.Context(), a.domain.ID); len(got) != 0 {
		t.Errorf("users of the deleted domain: %+v", got)
	}
	if _, n, _ := s.ListKeys(t.Context(), KeyFilter{AuthorityID: b.domain.ID}); n != 3 {
		t.Errorf("domain b keys = %d, want 3", n)
	}
	for _, err := range []error{s.DeleteDomain(t.Context(), "nope"), s.DeleteUser(t.Context(), "nope"),
		s.DeleteKey(t.Context(), "nope")} {
		if ErrorCode(err) != ENOTFOUND {
			t.Errorf("delete unknown: %v", err)
		}
	}
}

func TestDomainsAndUsers(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	d := &Domain{Name: " Main ", Domain: "HTTPS://Example.com:8443/app", Description: "x"}
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
		d    Domain
		want []Failure
	}{
		{Domain{Name: "dup", Domain: "example.COM"}, []Failure{{"domain", reasonTaken}}},
		{Domain{Name: "", Domain: ""}, []Failure{{"name", reasonRequired}, {"domain", reasonRequired}}},
		{Domain{Name: "bad", Domain: "exa mple"}, []Failure{{"domain", reasonInvalid}}},
	} {
		err := s.CreateDomain(ctx, &tt.d)
		if diff := cmp.Diff(tt.want, ErrorFailures(err)); diff != "" || ErrorCode(err) != EUNPROCESSABLE {
			t.Errorf("CreateDomain(%+v): %v (-want +got):\n%s", tt.d, err, diff)
		}
	}
	for _, tt := range []struct {
		u    User
		want []Failure
	}{
		{User{Name: "n", Email: "n@x"}, []Failure{{"authority_id", reasonRequired}}},
		{User{Name: "n", Email: "n@x", AuthorityID: "authority-nope"}, []Failure{{"authority_id", reasonMissing}}},
		{User{Name: "", Email: "no-at", AuthorityID: d.ID}, []Failure{{"name", reasonRequired}, {"email", reasonInvalid}}},
	} {
		err := s.CreateUser(ctx, &tt.u)
		if diff := cmp.Diff(tt.want, ErrorFailures(err)); diff != "" || ErrorCode(err) != EUNPROCESSABLE {
			t.Errorf("CreateUser(%+v): %v (-want +got):\n%s", tt.u, err, diff)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, s)); diff != "" {
		t.Errorf("store changed (-before +after):\n%s", diff)
	}

	// Update: host moves its index; authority cannot change.
	other := &Domain{Name: "Other", Domain: "other.com"}
	if err := s.CreateDomain(ctx, other); err != nil {
		t.Fatal(err)
	}
	upd := *d
	upd.Domain = "other.com"
	if err := s.UpdateDomain(ctx, &upd); ErrorCode(err) != EUNPROCESSABLE {
		t.Errorf("UpdateDomain to a taken host: %v", err)
	}
	upd.Domain = "new.example.com"
	if err := s.UpdateDomain(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DomainByHost(ctx, "example.com"); ErrorCode(err) != ENOTFOUND {
		t.Errorf("old host still resolves: %v", err)
	}
	if got, err := s.DomainByHost(ctx, "new.example.com"); err != nil || got.CreatedAt != d.CreatedAt {
		t.Errorf("new host: %+v, %v", got, err)
	}

	u := &User{Name: "U", Email: "u@x", AuthorityID: d.ID}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if u.Groups == nil || !strings.HasPrefix(u.ID, "user-") {
		t.Errorf("created user = %+v", u)
	}
	moved := *u
	moved.AuthorityID = other.ID
	if err := s.UpdateUser(ctx, &moved); ErrorCode(err) != EUNPROCESSABLE {
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
	for _, k := range []*APIKey{
		{Name: "charlie", UserID: a.user.ID},
		{Name: "Alpha", UserID: a.user.ID, Description: "lobby panel"},
		{Name: "bravo", UserID: a.admin.ID},
		{Name: "delta", UserID: b.user.ID, Description: "LOBBY"},
	} {
		mustCreateKey(t, s, k)
	}
	names := func(ks []*APIKey) (out []string) {
		for _, k := range ks {
			if k.Hash != "" {
				t.Errorf("listed key %s carries its hash", k.ID)
			}
			out = append(out, k.Name)
		}
		return out
	}
	tests := []struct {
		f     KeyFilter
		want  []string
		total int
	}{
		{KeyFilter{}, []string{"Alpha", "bravo", "charlie", "delta"}, 4},
		{KeyFilter{AuthorityID: a.domain.ID}, []string{"Alpha", "bravo", "charlie"}, 3},
		{KeyFilter{Q: "Lobby"}, []string{"Alpha", "delta"}, 2},
		{KeyFilter{Q: "AV"}, []string{"bravo"}, 1},
		{KeyFilter{Limit: 2, Offset: 1}, []string{"bravo", "charlie"}, 4},
		{KeyFilter{Limit: 2, Offset: 10}, nil, 4},
		{KeyFilter{AuthorityID: "authority-nope"}, nil, 0},
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
	valid := mustCreateKey(t, s, &APIKey{Name: "valid", UserID: f.user.ID, Scopes: []string{"public"}})
	expiring := mustCreateKey(t, s, &APIKey{Name: "expiring", UserID: f.user.ID, ExpiresAt: ptr(testNow.Unix() + 100)})
	id, secret, _ := ParseKey(valid)
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
		{"expiring, at expires_at", expiring, testNow.Add(100 * time.Second), ErrExpiredKey},
		{"expiring, after", expiring, testNow.Add(time.Hour), ErrExpiredKey},
		{"malformed", "not-a-key", testNow, ErrUnknownKey},
		{"empty", "", testNow, ErrUnknownKey},
		{"wrong secret", wrong, testNow, ErrUnknownKey},
		{"secret plus NUL", valid + "\x00", testNow, ErrUnknownKey},
		{"unknown id", unknownID, testNow, ErrUnknownKey},
		{"uppercase id", strings.ToUpper(id) + "." + secret, testNow, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			res, err := s.Authenticate(t.Context(), tt.key, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				if ErrorCode(err) != EUNAUTHORIZED {
					t.Errorf("code = %s", ErrorCode(err))
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
	if _, err := s.Authenticate(t.Context(), valid, testNow); !errors.Is(err, ErrUnknownKey) {
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
				k := &APIKey{Name: fmt.Sprintf("w%d-k%d", w, i), UserID: f.user.ID}
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
			shared := &APIKey{Name: "Shared", UserID: f.user.ID}
			if pt, err := s.CreateKey(t.Context(), shared); err == nil {
				mu.Lock()
				kept[shared.ID] = string(pt)
				mu.Unlock()
			} else if diff := cmp.Diff([]Failure{{"name", reasonTaken}}, ErrorFailures(err)); diff != "" {
				t.Errorf("shared name: %v", err)
			}
		})
	}
	wg.Wait()

	list, total, err := s.ListKeys(t.Context(), KeyFilter{})
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
	if _, n, _ := s.ListKeys(t.Context(), KeyFilter{AuthorityID: f.domain.ID}); n != wantN {
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
				_, err := s.CreateKey(t.Context(), &APIKey{Name: fmt.Sprintf("%d-%d", w, i), UserID: f.user.ID})
				if err != nil && ErrorCode(err) != EUNPROCESSABLE {
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
	if _, n, _ := s.ListKeys(t.Context(), KeyFilter{}); n != 0 {
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
		if _, err := s.CreateKey(b.Context(), &APIKey{Name: fmt.Sprintf("k%d", i), UserID: f.user.ID}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	s := newStore(b)
	f := seed(b, s, "example.com")
	pt := mustCreateKey(b, s, &APIKey{Name: "bench", UserID: f.user.ID})
	for i := range 1000 { // a few neighbours so the lookup is not trivially cached
		mustCreateKey(b, s, &APIKey{Name: fmt.Sprintf("k%d", i), UserID: f.user.ID})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authenticate(b.Context(), pt, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

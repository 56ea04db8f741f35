package storetest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Import with ids kept (Service.Import, docs/import.md): all or nothing, idempotent, keys
// working unchanged.

var importTests = []test{
	{"PlaceOSKeyWorksUnchanged", testImportPlaceOSKey},
	{"DryRunWritesNothing", testImportDryRun},
	{"ReimportChangesNothing", testImportIdempotent},
	{"ConflictsWriteNothing", testImportConflicts},
	{"BadRowsWriteNothing", testImportBadRows},
	{"ExpiredKeyStaysExpired", testImportExpired},
	{"DeletedKeyIsNeverBroughtBack", testImportDeletedKey},
	{"CascadeDeletesAreNeverBroughtBack", testImportAfterCascade},
}

// placeOSKey makes a key the way PlaceOS does (models api_key.cr): a 32-hex id, a 43-character
// base64url secret, and the stored secret column hex(HMAC-SHA512(key = secret, message = id)),
// computed here without keyauthz's own code. It returns the id, the key string and the hash.
func placeOSKey(t *testing.T) (id, plaintext, hash string) {
	t.Helper()
	var raw [48]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	id = hex.EncodeToString(raw[:16])
	secret := base64.RawURLEncoding.EncodeToString(raw[16:])
	mac := hmac.New(sha512.New, []byte(secret))
	mac.Write([]byte(id))
	return id, id + "." + secret, hex.EncodeToString(mac.Sum(nil))
}

// placeOSBatch is one authority, one support user and n keys of that user, as a PlaceOS export
// gives them (lines 1, 2, 3...), with the key strings.
func placeOSBatch(t *testing.T, host string, n int) (*keys.ImportBatch, []string) {
	t.Helper()
	b := &keys.ImportBatch{
		Domains: []keys.ImportDomain{{Line: 1, Domain: keys.Domain{ID: "authority-" + strings.ReplaceAll(host, ".", "_"), Name: "PlaceOS " + host, Domain: host}}},
		Users: []keys.ImportUser{{Line: 2, User: keys.User{ID: "user-" + strings.ReplaceAll(host, ".", "_"), AuthorityID: "authority-" + strings.ReplaceAll(host, ".", "_"),
			Name: "Panel", Email: "panel@" + host, Support: true, Groups: []string{"zone-1"}, CreatedAt: 1700000000}}},
	}
	var plain []string
	for i := range n {
		id, pt, hash := placeOSKey(t)
		b.Keys = append(b.Keys, keys.ImportKey{Line: 3 + i, Hash: hash, Key: keys.APIKey{
			ID: id, Name: "Panel key " + string(rune('a'+i)), Scopes: []string{"systems.READ", "control"},
			Permissions: keys.PermissionSupport, UserID: b.Users[0].User.ID, AuthorityID: b.Domains[0].Domain.ID, CreatedAt: 1700000000,
		}})
		plain = append(plain, pt)
	}
	return b, plain
}

func testImportPlaceOSKey(t *testing.T, s keys.Service) {
	ctx := t.Context()
	b, plain := placeOSBatch(t, "placeos.example.com", 2)
	res, err := s.Import(ctx, b, false)
	mustNot(t, "Import", err)
	if !res.Imported || res.Created != (keys.ImportCounts{Domains: 1, Users: 1, Keys: 2}) || res.Conflicts.Total() != 0 || len(res.Records) != 4 {
		t.Fatalf("Import = %+v", res)
	}
	wantCounts(t, s, 1, 1, 2)
	d, err := s.GetDomain(ctx, "authority-placeos_example_com")
	mustNot(t, "GetDomain(imported id)", err)
	if d.Domain != "placeos.example.com" {
		t.Errorf("imported domain = %+v", d)
	}
	u, err := s.GetUser(ctx, "user-placeos_example_com")
	mustNot(t, "GetUser(imported id)", err)
	if u.Level() != keys.PermissionSupport || u.CreatedAt != 1700000000 {
		t.Errorf("imported user = %+v", u)
	}
	for i, pt := range plain {
		res, err := s.Authenticate(ctx, pt, time.Now())
		if err != nil {
			t.Fatalf("Authenticate(PlaceOS key %d): %v", i, err)
		}
		k := res.Key
		if k.ID != b.Keys[i].Key.ID || k.AuthorityID != d.ID || k.Permissions != keys.PermissionSupport ||
			!cmp.Equal(k.Scopes, []string{"systems.read", "control"}) || k.CreatedAt != 1700000000 || res.Domain.ID != d.ID {
			t.Errorf("imported key %d = %+v", i, k)
		}
	}
	// The name index holds the imported names: a new key cannot take one.
	_, err = s.CreateKey(ctx, &keys.APIKey{Name: "PANEL KEY A", UserID: u.ID})
	wantErr(t, "CreateKey with an imported key's name", err, keys.EUNPROCESSABLE, failure{"name", keys.ReasonTaken})
	// One audit record for the whole import.
	recs, n, err := s.ListAudit(ctx, keys.AuditFilter{Action: keys.AuditImport})
	mustNot(t, "ListAudit", err)
	if n != 1 || len(recs) != 1 {
		t.Fatalf("audit records of the import: %d, want 1", n)
	}
	rec, err := json.Marshal(recs[0])
	mustNot(t, "encode the audit record", err)
	for i, k := range b.Keys {
		if !strings.Contains(string(rec), k.Key.ID) || strings.Contains(string(rec), k.Hash) ||
			strings.Contains(string(rec), plain[i][strings.IndexByte(plain[i], '.')+1:]) {
			t.Errorf("the import's audit record must name key %s and hold neither its hash nor its secret: %s", k.Key.ID, rec)
		}
	}
}

func testImportDryRun(t *testing.T, s keys.Service) {
	b, _ := placeOSBatch(t, "placeos.example.com", 1)
	before := snap(t, s)
	res, err := s.Import(t.Context(), b, true)
	mustNot(t, "Import(dry run)", err)
	if !res.DryRun || res.Imported || res.Created != (keys.ImportCounts{Domains: 1, Users: 1, Keys: 1}) {
		t.Errorf("dry run = %+v", res)
	}
	unchanged(t, s, before)
	if _, n, _ := s.ListAudit(t.Context(), keys.AuditFilter{}); n != 0 {
		t.Errorf("a dry run left %d audit records", n)
	}
}

func testImportIdempotent(t *testing.T, s keys.Service) {
	ctx := t.Context()
	b, plain := placeOSBatch(t, "placeos.example.com", 2)
	again := *b // the same rows, parsed again: Import normalises the batch it is given
	again.Domains = append([]keys.ImportDomain(nil), b.Domains...)
	again.Users = append([]keys.ImportUser(nil), b.Users...)
	again.Keys = append([]keys.ImportKey(nil), b.Keys...)
	_, err := s.Import(ctx, b, false)
	mustNot(t, "first Import", err)
	before := snap(t, s)
	res, err := s.Import(ctx, &again, false)
	mustNot(t, "second Import", err)
	if res.Imported || res.Created.Total() != 0 || res.Unchanged != (keys.ImportCounts{Domains: 1, Users: 1, Keys: 2}) {
		t.Errorf("re-import = %+v", res)
	}
	unchanged(t, s, before)
	authenticates(t, s, b.Keys[0].Key.ID, plain[0])
	if _, n, _ := s.ListAudit(ctx, keys.AuditFilter{Action: keys.AuditImport}); n != 1 {
		t.Errorf("%d import audit records after a re-import that changed nothing, want 1", n)
	}
}

func testImportConflicts(t *testing.T, s keys.Service) {
	ctx := t.Context()
	b, _ := placeOSBatch(t, "placeos.example.com", 2)
	_, err := s.Import(ctx, b, false)
	mustNot(t, "Import", err)
	taken := mustDomain(t, s, "Taken", "taken.example.com")
	before := snap(t, s)

	// A new export: the same key with another secret, a key whose name is stored under
	// another id, a domain whose host another domain holds, and one new key that would be
	// fine alone.
	next, _ := placeOSBatch(t, "placeos.example.com", 3)
	next.Keys[0].Key.ID = b.Keys[0].Key.ID // same id, another hash: a changed secret
	next.Domains = append(next.Domains, keys.ImportDomain{Line: 9, Domain: keys.Domain{ID: "authority-other", Name: "Other", Domain: "TAKEN.example.com"}})
	res, err := s.Import(ctx, next, false)
	if !errors.Is(err, keys.ErrImportConflicts) || res == nil {
		t.Fatalf("Import with conflicts = %v, %v; want ErrImportConflicts and the report", res, err)
	}
	want := map[int]string{3: "stored with other values of secret", 4: `name "Panel key b" is taken in its domain by stored key ` + b.Keys[1].Key.ID,
		9: "domain taken.example.com is the host of stored domain " + taken.ID}
	for _, r := range res.Records {
		if reason, ok := want[r.Line]; ok {
			if r.Action != keys.ImportConflict || r.Reason != reason {
				t.Errorf("line %d: %s %q, want conflict %q", r.Line, r.Action, r.Reason, reason)
			}
			delete(want, r.Line)
		}
	}
	if len(want) > 0 || res.Imported || res.Conflicts.Total() != 3 || res.Created.Keys != 1 {
		t.Errorf("report = %+v (missing lines %v)", res, want)
	}
	unchanged(t, s, before)
	// A dry run reports the same conflicts without an error.
	res, err = s.Import(ctx, next, true)
	if err != nil || res.Conflicts.Total() != 3 {
		t.Errorf("dry run with conflicts = %+v, %v", res, err)
	}
}

func testImportBadRows(t *testing.T, s keys.Service) {
	ctx := t.Context()
	st := mustSite(t, s, "stored.example.com")
	before := snap(t, s)
	b, _ := placeOSBatch(t, "placeos.example.com", 5)
	user := b.Users[0].User
	b.Keys[0].Key.UserID = "user-missing"                    // line 3
	b.Keys[1].Key.Permissions = keys.PermissionAdmin         // line 4: above the support user
	b.Keys[2].Key.AuthorityID = st.domain.ID                 // line 5: not its user's domain
	b.Keys[3].Key.Name = strings.ToUpper(b.Keys[4].Key.Name) // line 6 and 7 share a name
	b.Users = append(b.Users, keys.ImportUser{Line: 8, User: keys.User{ID: "user-2", AuthorityID: "authority-nowhere", Name: "N", Email: "n@x.example"}})
	b.Keys = append(b.Keys, keys.ImportKey{Line: 9, Hash: "xyz", Key: keys.APIKey{ID: "not-hex", Name: "k", UserID: user.ID}})
	_, err := s.Import(ctx, b, false)
	wantErr(t, "Import with bad rows", err, keys.EUNPROCESSABLE, failure{"line 9", ""})
	// The batch is judged against the store only once every row is well-formed.
	b.Keys = b.Keys[:5]
	_, err = s.Import(ctx, b, false)
	wantErr(t, "Import with bad rows", err, keys.EUNPROCESSABLE,
		failure{"line 3", "key " + b.Keys[0].Key.ID + ": user_id user-missing does not exist"},
		failure{"line 4", "key " + b.Keys[1].Key.ID + ": permissions exceeds the user's own level (support)"},
		failure{"line 5", "key " + b.Keys[2].Key.ID + ": authority_id " + st.domain.ID + " is not the domain of its user (" + user.AuthorityID + ")"},
		failure{"line 7", "key " + b.Keys[4].Key.ID + `: name "Panel key e" is also the name of line 6's key in the same domain`},
		failure{"line 8", "user user-2: authority_id authority-nowhere does not exist"})
	unchanged(t, s, before)
}

func testImportExpired(t *testing.T, s keys.Service) {
	ctx := t.Context()
	b, plain := placeOSBatch(t, "placeos.example.com", 1)
	past := time.Now().Add(-time.Hour).Unix()
	b.Keys[0].Key.ExpiresAt = &past
	_, err := s.Import(ctx, b, false)
	mustNot(t, "Import of an expired key", err)
	if _, err := s.Authenticate(ctx, plain[0], time.Now()); err != keys.ErrExpiredKey {
		t.Errorf("Authenticate(imported expired key) = %v, want ErrExpiredKey", err)
	}
}

// wantDeleted checks that res holds, for each line of want, a conflict whose reason says that
// kind id was deleted at a time within [from, to] (Unix seconds) and is never brought back.
func wantDeleted(t *testing.T, res *keys.ImportResult, from, to int64, want map[int][2]string) {
	t.Helper()
	seen := map[int]bool{}
	for _, r := range res.Records {
		w, ok := want[r.Line]
		if !ok {
			continue
		}
		seen[r.Line] = true
		kind, id := w[0], w[1]
		prefix := kind + " " + id + " was deleted at "
		tail := "; a deleted " + kind + " is never brought back by an import"
		if kind == keys.KindKey {
			tail = "; a revoked key is never brought back by an import"
		}
		when, found := strings.CutPrefix(r.Reason, prefix)
		when, found2 := strings.CutSuffix(when, tail)
		at, err := time.Parse(time.RFC3339, when)
		if r.Action != keys.ImportConflict || r.Kind != kind || r.ID != id || !found || !found2 || err != nil ||
			at.Unix() < from || at.Unix() > to {
			t.Errorf("line %d: %s %s %s %q; want a conflict %q<time in [%d, %d]>%q", r.Line, r.Action, r.Kind, r.ID, r.Reason, prefix, from, to, tail)
		}
	}
	for line := range want {
		if !seen[line] {
			t.Errorf("line %d: no outcome in %+v", line, res.Records)
		}
	}
}

// testImportDeletedKey: a key imported, then deleted (revoked), is never brought back by
// importing the same export again: the re-import is a conflict naming the key and when it was
// deleted, nothing is written, and its dry run reports the same.
func testImportDeletedKey(t *testing.T, s keys.Service) {
	ctx := t.Context()
	b, plain := placeOSBatch(t, "placeos.example.com", 2)
	_, err := s.Import(ctx, b, false)
	mustNot(t, "Import", err)
	revoked := b.Keys[0].Key.ID
	from := time.Now().Unix()
	mustNot(t, "DeleteKey", s.DeleteKey(ctx, revoked))
	to := time.Now().Unix()
	gone(t, s, revoked, plain[0])
	// Audit retention prunes the audit log, the delete's record included, never the mark.
	mustNot(t, "CreateDomain", s.CreateDomain(ctx, &keys.Domain{Name: "Later", Domain: "later.example.com"}))
	if n, err := s.PruneAudit(ctx, keys.AuditRetention{MaxCount: 1}); err != nil || n < 2 {
		t.Fatalf("PruneAudit(MaxCount 1) = %d, %v; want the import's and the delete's records pruned", n, err)
	}
	before := snap(t, s)
	for _, dry := range []bool{true, false} {
		res, err := s.Import(ctx, b, dry)
		switch {
		case dry && err != nil, !dry && !errors.Is(err, keys.ErrImportConflicts):
			t.Fatalf("re-import (dry run %v) after the delete: %v", dry, err)
		case res == nil:
			t.Fatalf("re-import (dry run %v): no report", dry)
		}
		if res.Imported || res.Conflicts != (keys.ImportCounts{Keys: 1}) || res.Unchanged != (keys.ImportCounts{Domains: 1, Users: 1, Keys: 1}) || res.Created.Total() != 0 {
			t.Errorf("re-import (dry run %v) = %+v", dry, res)
		}
		wantDeleted(t, res, from, to, map[int][2]string{3: {keys.KindKey, revoked}})
		unchanged(t, s, before)
		gone(t, s, revoked, plain[0])
	}
	// Alone in an export, with a new key beside it, the revoked key still refuses the whole
	// import.
	next, _ := placeOSBatch(t, "placeos.example.com", 3)
	next.Keys[0] = b.Keys[0]
	next.Keys[1] = b.Keys[1]
	res, err := s.Import(ctx, next, false)
	if !errors.Is(err, keys.ErrImportConflicts) || res == nil || res.Conflicts.Keys != 1 || res.Created.Keys != 1 {
		t.Fatalf("import of a revoked key beside a new one = %+v, %v; want the conflict", res, err)
	}
	unchanged(t, s, before)
	authenticates(t, s, b.Keys[1].Key.ID, plain[1])
}

// testImportAfterCascade: the records a cascade deleted (a user and its keys; a domain, its
// users and their keys) are never brought back by an import: each deleted row is a conflict
// naming it, nothing is written; a key of the deleted user that was never imported is
// refused with them, since its user is.
func testImportAfterCascade(t *testing.T, s keys.Service) {
	cases := []struct {
		name      string
		del       func(ctx context.Context, b *keys.ImportBatch) error
		conflicts keys.ImportCounts
		deleted   func(b *keys.ImportBatch) map[int][2]string
	}{
		{
			name: "DeleteUser",
			del: func(ctx context.Context, b *keys.ImportBatch) error {
				return s.DeleteUser(ctx, b.Users[0].User.ID)
			},
			conflicts: keys.ImportCounts{Users: 1, Keys: 2},
			deleted: func(b *keys.ImportBatch) map[int][2]string {
				return map[int][2]string{2: {keys.KindUser, b.Users[0].User.ID},
					3: {keys.KindKey, b.Keys[0].Key.ID}, 4: {keys.KindKey, b.Keys[1].Key.ID}}
			},
		},
		{
			name: "DeleteDomain",
			del: func(ctx context.Context, b *keys.ImportBatch) error {
				return s.DeleteDomain(ctx, b.Domains[0].Domain.ID)
			},
			conflicts: keys.ImportCounts{Domains: 1, Users: 1, Keys: 2},
			deleted: func(b *keys.ImportBatch) map[int][2]string {
				return map[int][2]string{1: {keys.KindDomain, b.Domains[0].Domain.ID}, 2: {keys.KindUser, b.Users[0].User.ID},
					3: {keys.KindKey, b.Keys[0].Key.ID}, 4: {keys.KindKey, b.Keys[1].Key.ID}}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			host := strings.ToLower(c.name) + ".example.com"
			b, plain := placeOSBatch(t, host, 2)
			_, err := s.Import(ctx, b, false)
			mustNot(t, "Import", err)
			from := time.Now().Unix()
			mustNot(t, c.name, c.del(ctx, b))
			to := time.Now().Unix()
			before := snap(t, s)
			for _, dry := range []bool{true, false} {
				res, err := s.Import(ctx, b, dry)
				if (dry && err != nil) || (!dry && !errors.Is(err, keys.ErrImportConflicts)) || res == nil {
					t.Fatalf("re-import (dry run %v) after %s = %+v, %v", dry, c.name, res, err)
				}
				if res.Imported || res.Conflicts != c.conflicts {
					t.Errorf("re-import (dry run %v) after %s = %+v; want conflicts %+v", dry, c.name, res, c.conflicts)
				}
				wantDeleted(t, res, from, to, c.deleted(b))
				unchanged(t, s, before)
			}
			for i, pt := range plain {
				gone(t, s, b.Keys[i].Key.ID, pt)
			}
			// A later export of the same user with a key never imported: the user is refused,
			// and so nothing of it is written.
			later, _ := placeOSBatch(t, host, 1)
			res, err := s.Import(ctx, later, false)
			if !errors.Is(err, keys.ErrImportConflicts) || res == nil || res.Conflicts.Users != 1 {
				t.Fatalf("import of a new key of the deleted user = %+v, %v; want the user's conflict", res, err)
			}
			unchanged(t, s, before)
		})
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// End-to-end tests of the admin API's escalation limits (docs/http-api.md#who-may-call-it):
// self-service, own-domain reads, the minting cap, scope limits, and JSON-only writes. Each
// refusal is checked together with the store: a refused request changes nothing.

// storeState is everything the admin API stores, read as the bootstrap admin (last_used_at,
// which a flush of key uses may change at any time, left out): for "nothing changed".
func (w *world) storeState(t *testing.T) string {
	t.Helper()
	domains := w.admin(t, "GET", "/api/engine/v2/domains", nil, http.StatusOK).body
	users := w.admin(t, "GET", "/api/engine/v2/users", nil, http.StatusOK).body
	keys := w.listKeys(t)
	for i := range keys {
		keys[i].LastUsedAt = nil
	}
	b, err := json.MarshalIndent(keys, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(domains) + "\n" + string(users) + "\n" + string(b)
}

// unchanged fails the test if the store differs from before.
func (w *world) unchanged(t *testing.T, before string) {
	t.Helper()
	if after := w.storeState(t); after != before {
		t.Errorf("the store changed (-before +after):\n%s", cmp.Diff(before, after))
	}
}

// createUserWith creates a user in the localhost domain from fields (name and email derived
// from name) and returns its id.
func (w *world) createUserWith(t *testing.T, name string, fields map[string]any) string {
	t.Helper()
	body := map[string]any{"authority_id": w.domainID, "name": name, "email": strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com"}
	for k, v := range fields {
		body[k] = v
	}
	r := w.admin(t, "POST", "/api/engine/v2/users", body, http.StatusCreated)
	return decode[struct{ ID string }](t, r.body).ID
}

// keyFor creates a key for userID with scopes and permissions, and returns its plaintext.
func (w *world) keyFor(t *testing.T, userID, name, permissions string, scopes ...string) string {
	t.Helper()
	return *w.createKey(t, map[string]any{"name": name, "user_id": userID, "permissions": permissions, "scopes": scopes}).XAPIKey
}

// wantError checks a reply's status and its exact {"error"} message.
func wantError(t *testing.T, what string, r reply, status int, msg string) {
	t.Helper()
	var body errorBody
	if err := json.Unmarshal(r.body, &body); err != nil {
		body.Error = fmt.Sprintf("(not a JSON error: %q)", r.body)
	}
	if got := (statusError{r.status, body.Error}); got != (statusError{status, msg}) {
		t.Errorf("%s: got %d %q, want %d %q", what, got.Status, got.Error, status, msg)
	}
}

// TestSelfServiceLimits: a caller below admin level may change its own user's name and email,
// but not sys_admin, support, groups or authority_id (403 naming them, nothing stored); a field
// sent with its current value is not a change. Covers self-promotion, a demoted user undoing
// its demotion, and a user giving itself guest groups.
func TestSelfServiceLimits(t *testing.T) {
	w := newWorld(t, "")
	otherDomain := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/domains",
		map[string]any{"name": "Other", "domain": "other.example"}, http.StatusCreated).body).ID

	plainID := w.createUser(t, "Plain User", false)
	usersKey := w.keyFor(t, plainID, "users write", "user", "users")
	publicKey := w.keyFor(t, plainID, "public user", "user", "public")

	supportID := w.createUserWith(t, "Support User", map[string]any{"support": true})
	supportKey := w.keyFor(t, supportID, "support key", "support", "public")

	// A sys_admin whose admin key works until an admin demotes the user.
	demotedID := w.createUser(t, "Demoted Admin", true)
	demotedKey := w.keyFor(t, demotedID, "ops", "admin", "public")
	if r := w.must(t, call{method: "GET", path: "/api/engine/v2/api_keys", key: demotedKey}); r.status != http.StatusOK {
		t.Fatalf("the admin key before the demotion: %d %s", r.status, r.body)
	}
	w.admin(t, "PATCH", "/api/engine/v2/users/"+demotedID, map[string]any{"sys_admin": false}, http.StatusOK)

	self := func(id string) string { return "/api/engine/v2/users/" + id }
	cases := []struct {
		name, method, key, path string
		body                    any
		wantStatus              int
		wantErr                 string
	}{
		{"self-promotion with users write", "PATCH", usersKey, self(plainID), map[string]any{"sys_admin": true, "support": true},
			403, "only an admin may change sys_admin, support"},
		{"self-promotion with public", "PATCH", publicKey, self(plainID), map[string]any{"sys_admin": true},
			403, "only an admin may change sys_admin"},
		{"self-promotion by PUT", "PUT", publicKey, self(plainID), map[string]any{"name": "Plain User", "support": true},
			403, "only an admin may change support"},
		{"a name change carrying a promotion", "PATCH", usersKey, self(plainID), map[string]any{"name": "Sneaky", "sys_admin": true},
			403, "only an admin may change sys_admin"},
		{"guest groups", "PATCH", usersKey, self(plainID), map[string]any{"groups": []string{"sys-guest-1", "zone-1"}},
			403, "only an admin may change groups"},
		{"moving to another domain", "PATCH", usersKey, self(plainID), map[string]any{"authority_id": otherDomain},
			403, "only an admin may change authority_id"},
		{"everything at once", "PUT", usersKey, self(plainID), map[string]any{"sys_admin": true, "support": true, "groups": []string{"g"}, "authority_id": otherDomain},
			403, "only an admin may change sys_admin, support, groups, authority_id"},
		{"demoted user undoes its demotion", "PATCH", demotedKey, self(demotedID), map[string]any{"sys_admin": true},
			403, "only an admin may change sys_admin"},
		{"support user makes itself admin", "PATCH", supportKey, self(supportID), map[string]any{"sys_admin": true},
			403, "only an admin may change sys_admin"},
		{"support user drops support for groups", "PATCH", supportKey, self(supportID), map[string]any{"groups": []string{"all"}},
			403, "only an admin may change groups"},
		// Another user is the policy's refusal (gate admin or self): the handler never runs.
		{"promoting another user", "PATCH", publicKey, self(supportID), map[string]any{"sys_admin": true}, 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := w.storeState(t)
			r := w.must(t, call{method: tc.method, path: tc.path, body: tc.body, key: tc.key})
			if tc.wantErr == "" {
				if r.status != tc.wantStatus || decode[errorBody](t, r.body).Error == "" {
					t.Errorf("status %d %s, want %d with an error", r.status, r.body, tc.wantStatus)
				}
			} else {
				wantError(t, tc.method+" "+tc.path, r, tc.wantStatus, tc.wantErr)
			}
			w.unchanged(t, before)
		})
	}

	// The demoted key is still narrowed: the refusal above did not restore it.
	if r := w.must(t, call{method: "GET", path: "/api/engine/v2/api_keys", key: demotedKey}); r.status != http.StatusForbidden {
		t.Errorf("the demoted admin key lists keys: %d %s", r.status, r.body)
	}

	t.Run("name and email may change", func(t *testing.T) {
		r := w.must(t, call{method: "PATCH", path: self(plainID), key: usersKey,
			body: map[string]any{"name": "Plain Renamed", "email": "renamed@example.com"}})
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		got := decode[map[string]any](t, w.admin(t, "GET", self(plainID), nil, http.StatusOK).body)
		if got["name"] != "Plain Renamed" || got["email"] != "renamed@example.com" || got["sys_admin"] != false {
			t.Errorf("stored %v", got)
		}
	})

	t.Run("the record read back is not a change", func(t *testing.T) {
		// Give the user groups as an admin, then PUT back what the user reads, with a new name;
		// groups in another order are the same groups.
		w.admin(t, "PATCH", self(supportID), map[string]any{"groups": []string{"zone-1", "sys-2"}}, http.StatusOK)
		r := w.must(t, call{method: "GET", path: "/api/engine/v2/users/current", key: supportKey})
		if r.status != http.StatusOK {
			t.Fatalf("current: %d %s", r.status, r.body)
		}
		rec := decode[map[string]any](t, r.body)
		rec["name"] = "Support Renamed"
		if r := w.must(t, call{method: "PUT", path: self(supportID), key: supportKey, body: rec}); r.status != http.StatusOK {
			t.Fatalf("PUT back the record read: %d %s", r.status, r.body)
		}
		rec["groups"] = []string{"sys-2", "zone-1", "sys-2"}
		if r := w.must(t, call{method: "PATCH", path: self(supportID), key: supportKey, body: rec}); r.status != http.StatusOK {
			t.Fatalf("PATCH with the groups reordered: %d %s", r.status, r.body)
		}
		got := decode[map[string]any](t, w.admin(t, "GET", self(supportID), nil, http.StatusOK).body)
		if got["name"] != "Support Renamed" || got["support"] != true || got["sys_admin"] != false {
			t.Errorf("stored %v", got)
		}
		// The demoted user may send its current flags back too.
		if r := w.must(t, call{method: "PATCH", path: self(demotedID), key: demotedKey,
			body: map[string]any{"sys_admin": false, "support": false, "groups": []string{}, "authority_id": w.domainID}}); r.status != http.StatusOK {
			t.Errorf("the demoted user sending its current flags: %d %s", r.status, r.body)
		}
	})

	t.Run("an admin still changes flags and groups", func(t *testing.T) {
		r := w.admin(t, "PATCH", self(plainID), map[string]any{"support": true, "groups": []string{"sys-guest-1"}}, http.StatusOK)
		got := decode[map[string]any](t, r.body)
		if got["support"] != true || fmt.Sprint(got["groups"]) != "[sys-guest-1]" {
			t.Errorf("admin PATCH stored %v", got)
		}
		// An admin moving a user to another domain stays a validation failure.
		r = w.admin(t, "PATCH", self(plainID), map[string]any{"authority_id": otherDomain}, http.StatusUnprocessableEntity)
		if diff := cmp.Diff([]failureRecord{{"authority_id", "cannot be changed"}}, decode[errorBody](t, r.body).Failures); diff != "" {
			t.Errorf("admin moving a user (-want +got):\n%s", diff)
		}
	})
}

// TestUserReadsStayInTheDomain: a caller below admin level lists and shows only its own
// domain's users (another domain's user is a 404 like a missing one); an admin reads every
// domain.
func TestUserReadsStayInTheDomain(t *testing.T) {
	w := newWorld(t, "")
	otherDomain := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/domains",
		map[string]any{"name": "Other", "domain": "other.example"}, http.StatusCreated).body).ID
	foreignUser := decode[struct{ ID string }](t, w.admin(t, "POST", "/api/engine/v2/users",
		map[string]any{"authority_id": otherDomain, "name": "Foreign Admin", "email": "root@other.example", "sys_admin": true, "groups": []string{"secret"}}, http.StatusCreated).body).ID

	readerID := w.createUser(t, "Reader", false)
	readKey := w.keyFor(t, readerID, "reader", "user", "users.read")
	supportID := w.createUserWith(t, "Helpdesk", map[string]any{"support": true})
	supportKey := w.keyFor(t, supportID, "helpdesk", "support", "public")

	// The localhost users, as the admin sees them.
	var local []string
	for _, u := range decode[[]struct{ ID, AuthorityID string }](t, w.admin(t, "GET", "/api/engine/v2/users?authority_id="+w.domainID, nil, http.StatusOK).body) {
		local = append(local, u.ID)
	}
	ids := func(t *testing.T, r reply) []string {
		t.Helper()
		var out []string
		for _, u := range decode[[]struct {
			ID          string `json:"id"`
			AuthorityID string `json:"authority_id"`
		}](t, r.body) {
			out = append(out, u.ID)
		}
		return out
	}
	missing := w.must(t, call{method: "GET", path: "/api/engine/v2/users/user-nosuchuser0000", key: readKey})

	for _, key := range []struct{ name, key string }{{"user level", readKey}, {"support level", supportKey}} {
		t.Run(key.name, func(t *testing.T) {
			for _, path := range []string{"/api/engine/v2/users", "/api/engine/v2/users?authority_id=" + w.domainID} {
				r := w.must(t, call{method: "GET", path: path, key: key.key})
				if r.status != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, r.status, r.body)
				}
				if diff := cmp.Diff(local, ids(t, r)); diff != "" {
					t.Errorf("GET %s lists (-own domain +got):\n%s", path, diff)
				}
				if strings.Contains(string(r.body), "other.example") || r.header.Get("X-Total-Count") != fmt.Sprint(len(local)) {
					t.Errorf("GET %s shows another domain: X-Total-Count %s, %s", path, r.header.Get("X-Total-Count"), r.body)
				}
			}
			r := w.must(t, call{method: "GET", path: "/api/engine/v2/users?authority_id=" + otherDomain, key: key.key})
			wantError(t, "list another domain", r, 403, "a caller below admin level may list only its own domain's users")

			// Another domain's user is exactly as absent as a missing id.
			r = w.must(t, call{method: "GET", path: "/api/engine/v2/users/" + foreignUser, key: key.key})
			if r.status != http.StatusNotFound || strings.Contains(string(r.body), "other.example") || strings.Contains(string(r.body), "secret") {
				t.Errorf("show another domain's user: %d %s, want a 404", r.status, r.body)
			}
			want := strings.Replace(string(missing.body), "user-nosuchuser0000", foreignUser, 1)
			if string(r.body) != want {
				t.Errorf("show another domain's user: body %s, want the missing id's %s", r.body, want)
			}
			if r := w.must(t, call{method: "GET", path: "/api/engine/v2/users/" + readerID, key: key.key}); r.status != http.StatusOK {
				t.Errorf("show a user of its own domain: %d %s", r.status, r.body)
			}
		})
	}

	t.Run("admin reads every domain", func(t *testing.T) {
		all := ids(t, w.admin(t, "GET", "/api/engine/v2/users", nil, http.StatusOK))
		if len(all) != len(local)+1 || !strings.Contains(strings.Join(all, ","), foreignUser) {
			t.Errorf("admin lists %v, want the %d local users and %s", all, len(local), foreignUser)
		}
		if got := ids(t, w.admin(t, "GET", "/api/engine/v2/users?authority_id="+otherDomain, nil, http.StatusOK)); !cmp.Equal(got, []string{foreignUser}) {
			t.Errorf("admin lists the other domain: %v", got)
		}
		w.admin(t, "GET", "/api/engine/v2/users/"+foreignUser, nil, http.StatusOK)
	})
}

// TestMintingCap: a key created or updated through the admin API may not be stronger than the
// calling key, in level or in scopes, and an update cannot touch a key stronger than the
// caller. Each refusal is a 403 naming the scope or the level, with nothing stored.
func TestMintingCap(t *testing.T) {
	w := newWorld(t, "")
	opsUser := w.createUser(t, "Ops", true)
	// The bootstrap user is admin_support; its key is admin (and no admin key creates an
	// admin_support user).
	bossUser := w.bootstrapUserID(t)
	panelUser := w.createUser(t, "Panel", false)
	// An admin key scoped to api_keys only: it manages keys, and must not mint public ones.
	ops := w.createKey(t, map[string]any{"name": "ops", "user_id": opsUser, "permissions": "admin", "scopes": []string{"api_keys"}})
	opsKey := *ops.XAPIKey
	panel := w.createKey(t, bookingPanel(panelUser, "panel"))
	bootstrapID, _, _ := strings.Cut(w.AdminKey, ".")
	// An admin key confined to loopback (where the test's requests come from): it must not mint
	// a key usable from anywhere else.
	loopback := w.createKey(t, map[string]any{"name": "loopback ops", "user_id": opsUser, "permissions": "admin",
		"scopes": []string{"api_keys"}, "allowed_cidrs": []string{"127.0.0.0/8", "::1"}})
	loopbackKey := *loopback.XAPIKey
	confined := func(cidrs ...string) map[string]any {
		k := newKeyBody(panelUser, "user", "api_keys.read")
		k["name"] = "confined"
		if cidrs != nil {
			k["allowed_cidrs"] = cidrs
		}
		return k
	}

	newKey := newKeyBody
	keysPath := "/api/engine/v2/api_keys"
	cases := []struct {
		name, method, key, path string
		body                    any
		wantErr                 string
	}{
		{"mint public", "POST", opsKey, keysPath, newKey(panelUser, "user", "public"),
			"cannot grant scope public: the calling key does not hold it"},
		{"mint public.read", "POST", opsKey, keysPath, newKey(panelUser, "user", "api_keys.read", "public.read"),
			"cannot grant scope public.read: the calling key does not hold it"},
		{"mint another resource", "POST", opsKey, keysPath, newKey(panelUser, "user", "systems"),
			"cannot grant scope systems: the calling key does not hold it"},
		{"mint guest without public", "POST", opsKey, keysPath, newKey(panelUser, "user", "guest"),
			"cannot grant scope guest: the calling key does not hold it"},
		{"mint above its level", "POST", opsKey, keysPath, newKey(bossUser, "admin_support", "api_keys.read"),
			"cannot grant permissions admin_support: above the calling key's admin"},
		{"widen its own scopes", "PATCH", opsKey, keysPath + "/" + ops.ID, map[string]any{"scopes": []string{"api_keys", "public"}},
			"cannot grant scope public: the calling key does not hold it"},
		{"widen its own scopes by PUT", "PUT", opsKey, keysPath + "/" + ops.ID, map[string]any{"name": "ops", "scopes": []string{"users"}},
			"cannot grant scope users: the calling key does not hold it"},
		{"widen another key", "PATCH", opsKey, keysPath + "/" + panel.ID, map[string]any{"scopes": []string{"api_keys", "zones"}},
			"cannot change key " + panel.ID + ": it holds scope users.read, which the calling key does not hold"},
		{"rename a stronger key", "PATCH", opsKey, keysPath + "/" + bootstrapID, map[string]any{"name": "mine now"},
			"cannot change key " + bootstrapID + ": it holds scope public, which the calling key does not hold"},
		{"narrow a stronger key", "PATCH", opsKey, keysPath + "/" + bootstrapID, map[string]any{"scopes": []string{}},
			"cannot change key " + bootstrapID + ": it holds scope public, which the calling key does not hold"},
		{"raise its own key above its level", "PATCH", opsKey, keysPath + "/" + ops.ID, map[string]any{"permissions": "admin_support"},
			"cannot grant permissions admin_support: above the calling key's admin"},
		{"a confined key mints an unconfined one", "POST", loopbackKey, keysPath, confined(),
			"cannot grant a key usable from any network: the calling key is allowed only from 127.0.0.0/8, ::1/128"},
		{"a confined key mints one for another network", "POST", loopbackKey, keysPath, confined("127.0.0.0/24", "192.0.2.0/24"),
			"cannot grant a key usable from 192.0.2.0/24: the calling key is allowed only from 127.0.0.0/8, ::1/128"},
		{"a confined key lifts its own allow-list", "PATCH", loopbackKey, keysPath + "/" + loopback.ID, map[string]any{"allowed_cidrs": nil},
			"cannot grant a key usable from any network: the calling key is allowed only from 127.0.0.0/8, ::1/128"},
		{"a confined key deletes an unconfined one", "DELETE", loopbackKey, keysPath + "/" + panel.ID, nil,
			"cannot delete key " + panel.ID + ": it holds scope users.read, which the calling key does not hold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := w.storeState(t)
			r := w.must(t, call{method: tc.method, path: tc.path, body: tc.body, key: tc.key})
			wantError(t, tc.method+" "+tc.path, r, http.StatusForbidden, tc.wantErr)
			w.unchanged(t, before)
		})
	}

	t.Run("within the caller's rights", func(t *testing.T) {
		// A confined key mints keys confined within its own networks.
		if k := w.createKeyAs(t, loopbackKey, confined("127.0.0.1")); !cmp.Equal(k.AllowedCIDRs, []string{"127.0.0.1/32"}) {
			t.Errorf("minted %+v", k)
		}
		// api_keys covers api_keys.read in any case; the level is the caller's or below.
		k := w.createKeyAs(t, opsKey, newKey(opsUser, "admin", "api_keys.READ"))
		if !cmp.Equal(k.Scopes, []string{"api_keys.read"}) || k.Permissions != "admin" {
			t.Errorf("minted %+v", k)
		}
		// Narrowing its own key is allowed; so is renaming a key it could mint.
		if r := w.must(t, call{method: "PATCH", path: keysPath + "/" + k.ID, key: opsKey, body: map[string]any{"name": "reader", "scopes": []string{}}}); r.status != http.StatusOK {
			t.Errorf("narrow a key it minted: %d %s", r.status, r.body)
		}
		// The bootstrap key (public, admin) mints guest keys: public covers guest, a deliberate
		// choice (docs/keys.md#the-minting-cap; see keys.ScopesCover).
		guest := newKey(panelUser, "user", "guest")
		guest["name"] = "guest panel"
		g := w.createKeyAs(t, w.AdminKey, guest)
		if !cmp.Equal(g.Scopes, []string{"guest"}) {
			t.Errorf("guest key %+v", g)
		}
	})
}

// createKeyAs creates a key with the calling key key and returns the 201's record.
func (w *world) createKeyAs(t *testing.T, key string, body map[string]any) keyRecord {
	t.Helper()
	r := w.must(t, call{method: "POST", path: "/api/engine/v2/api_keys", body: body, key: key})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	return decode[keyRecord](t, r.body)
}

// TestScopeLimits: at most 64 scopes of at most 64 characters (and 3072 in all) per key; more
// is a 422 on field "scopes", on create and on update, with nothing stored.
func TestScopeLimits(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Limited", false)
	k := w.createKey(t, bookingPanel(userID, "panel"))
	list := func(n, size int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%0*d", size, i)
		}
		return out
	}
	tooMany := []failureRecord{{"scopes", "has too many entries (maximum is 64)"}}
	tooLong := []failureRecord{{"scopes", "has an entry that is too long (maximum is 64 characters)"}}
	tooMuch := []failureRecord{{"scopes", "is too long in all (maximum is 3072 characters, joined by commas)"}}
	cases := []struct {
		name   string
		scopes []string
		want   []failureRecord
	}{
		{"65 scopes", list(65, 3), tooMany},
		{"a 65-character scope", []string{strings.Repeat("a", 60) + ".read"}, tooLong},
		{"64 scopes of 64 characters", list(64, 64), tooMuch},
		{"10000 scopes", list(10000, 10), append(slicesClone(tooMany), tooMuch...)},
	}
	for _, tc := range cases {
		for _, method := range []string{"POST", "PATCH"} {
			t.Run(method+" "+tc.name, func(t *testing.T) {
				before := w.storeState(t)
				path, body := "/api/engine/v2/api_keys", map[string]any{"name": "many", "user_id": userID, "scopes": tc.scopes}
				if method == "PATCH" {
					path, body = path+"/"+k.ID, map[string]any{"scopes": tc.scopes}
				}
				r := w.admin(t, method, path, body, http.StatusUnprocessableEntity)
				if diff := cmp.Diff(errorBody{"validation failed", tc.want}, decode[errorBody](t, r.body)); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				w.unchanged(t, before)
			})
		}
	}
	// At the limits: 64 scopes, one of them 64 characters, 3072 in all.
	atLimit := append(list(63, 46), strings.Repeat("b", 58)+".write")
	w.admin(t, "PATCH", "/api/engine/v2/api_keys/"+k.ID, map[string]any{"scopes": atLimit}, http.StatusOK)
	if n := len(strings.Join(atLimit, ",")); n > 3072 {
		t.Fatalf("the at-limit list is %d characters", n)
	}
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

// rawSend sends body with exactly the headers h (no default Content-Type) to host localhost.
func (ts *testServer) rawSend(t *testing.T, method, path, body string, h http.Header) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	for name, vs := range h {
		req.Header[name] = vs
	}
	resp, err := http.DefaultClient.Do(req)
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

// TestAdminWritesTakeJSONOnly: every admin-API write (POST, PUT, PATCH) whose body is not
// declared application/json is a 415, with nothing stored, whatever the body holds: text/plain,
// form and multipart bodies are what a browser sends cross-site without a preflight.
func TestAdminWritesTakeJSONOnly(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Typed", false)
	k := w.createKey(t, bookingPanel(userID, "panel"))

	writes := []struct{ method, path, body string }{
		{"POST", "/api/engine/v2/api_keys", `{"name":"csrf","user_id":"` + userID + `","scopes":["public"]}`},
		{"PATCH", "/api/engine/v2/api_keys/" + k.ID, `{"scopes":["public"]}`},
		{"PUT", "/api/engine/v2/api_keys/" + k.ID, `{"scopes":["public"]}`},
		{"POST", "/api/engine/v2/domains", `{"name":"csrf","domain":"csrf.example"}`},
		{"PATCH", "/api/engine/v2/domains/" + w.domainID, `{"description":"csrf"}`},
		{"PUT", "/api/engine/v2/domains/" + w.domainID, `{"description":"csrf"}`},
		{"POST", "/api/engine/v2/users", `{"authority_id":"` + w.domainID + `","name":"csrf","email":"c@x.example","sys_admin":true}`},
		{"PATCH", "/api/engine/v2/users/" + userID, `{"sys_admin":true}`},
		{"PUT", "/api/engine/v2/users/" + userID, `{"sys_admin":true}`},
	}
	types := []struct {
		name string
		h    []string // the Content-Type values sent; none for no header
	}{
		{"no Content-Type", nil},
		{"text/plain", []string{"text/plain"}},
		{"text/plain with charset", []string{"text/plain;charset=UTF-8"}},
		{"form", []string{"application/x-www-form-urlencoded"}},
		{"multipart", []string{"multipart/form-data; boundary=----x"}},
		{"a JSON-like type", []string{"application/json-patch+json"}},
		{"a prefix of JSON", []string{"application/jsonx"}},
		{"text/json", []string{"text/json"}},
		{"empty", []string{""}},
		{"malformed parameters", []string{"application/json; charset"}},
		{"two values", []string{"application/json", "text/plain"}},
	}
	for _, ct := range types {
		t.Run(ct.name, func(t *testing.T) {
			before := w.storeState(t)
			for _, wr := range writes {
				h := http.Header{"X-Api-Key": {w.AdminKey}}
				if ct.h != nil {
					h["Content-Type"] = ct.h
				}
				r := w.rawSend(t, wr.method, wr.path, wr.body, h)
				wantError(t, wr.method+" "+wr.path, r, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			}
			w.unchanged(t, before)
		})
	}

	// application/json in any case, with parameters, is accepted.
	for i, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/json ; charset=\"utf-8\""} {
		r := w.rawSend(t, "POST", "/api/engine/v2/domains", fmt.Sprintf(`{"name":"typed %d","domain":"typed%d.example"}`, i, i),
			http.Header{"X-Api-Key": {w.AdminKey}, "Content-Type": {ct}})
		if r.status != http.StatusCreated {
			t.Errorf("Content-Type %q: %d %s, want 201", ct, r.status, r.body)
		}
	}
	// Reads and deletes carry no body and need no Content-Type.
	r := w.rawSend(t, "DELETE", "/api/engine/v2/api_keys/"+k.ID, "", http.Header{"X-Api-Key": {w.AdminKey}})
	if r.status != http.StatusAccepted {
		t.Errorf("DELETE without Content-Type: %d %s", r.status, r.body)
	}
}

// bootstrapUserID is the id of the bootstrap key's user (admin_support).
func (w *world) bootstrapUserID(t *testing.T) string {
	t.Helper()
	return decode[struct{ ID string }](t, w.admin(t, "GET", "/api/engine/v2/users/current", nil, http.StatusOK).body).ID
}

// TestDeletesAndUsersAreCapped: no key deletes a key stronger than itself (the minting cap's
// "before" half), and an admin creates, changes and deletes only users at or below its own
// effective level, never raising one above it, and deletes a user only with keys it could
// delete. Each refusal is a 403 with nothing stored; self-service on the caller's own record
// still works.
func TestDeletesAndUsersAreCapped(t *testing.T) {
	w := newWorld(t, "")
	bootstrapID, _, _ := strings.Cut(w.AdminKey, ".")
	bootUser := w.bootstrapUserID(t)

	opsUser := w.createUser(t, "Ops", true)
	// An admin key that manages keys only, and one that manages users only.
	keysAdmin := w.keyFor(t, opsUser, "keys admin", "admin", "api_keys")
	usersAdmin := w.keyFor(t, opsUser, "users admin", "admin", "users")
	// A public admin key: it may delete every key below, but not the admin_support bootstrap
	// user, and so not the domain that holds it.
	publicAdmin := w.keyFor(t, opsUser, "public admin", "admin", "public")
	panelUser := w.createUser(t, "Panel", false)
	panel := w.createKey(t, bookingPanel(panelUser, "panel"))
	weak := w.createKey(t, map[string]any{"name": "weak", "user_id": panelUser, "scopes": []string{"api_keys.read"}})
	// An admin user holding a public key: a users-only admin may not delete it with the user.
	strongUser := w.createUser(t, "Strong", true)
	strongKey := w.createKey(t, map[string]any{"name": "strong", "user_id": strongUser, "permissions": "admin", "scopes": []string{"public"}})

	keysPath, usersPath := "/api/engine/v2/api_keys/", "/api/engine/v2/users/"
	cases := []struct {
		name, method, key, path string
		body                    any
		wantErr                 string
	}{
		{"delete the bootstrap key", "DELETE", keysAdmin, keysPath + bootstrapID, nil,
			"cannot delete key " + bootstrapID + ": it holds scope public, which the calling key does not hold"},
		{"delete a key with another resource", "DELETE", keysAdmin, keysPath + panel.ID, nil,
			"cannot delete key " + panel.ID + ": it holds scope users.read, which the calling key does not hold"},
		{"demote the admin_support user", "PATCH", usersAdmin, usersPath + bootUser, map[string]any{"sys_admin": false, "support": false},
			"cannot change user " + bootUser + ": its level admin_support is above the calling key's admin"},
		{"rename the admin_support user", "PATCH", usersAdmin, usersPath + bootUser, map[string]any{"name": "taken over"},
			"cannot change user " + bootUser + ": its level admin_support is above the calling key's admin"},
		{"delete the admin_support user", "DELETE", usersAdmin, usersPath + bootUser, nil,
			"cannot delete user " + bootUser + ": its level admin_support is above the calling key's admin"},
		{"create an admin_support user", "POST", usersAdmin, "/api/engine/v2/users",
			map[string]any{"authority_id": w.domainID, "name": "Boss", "email": "boss@example.com", "sys_admin": true, "support": true},
			"cannot give a user level admin_support: above the calling key's admin"},
		{"raise a user above itself", "PATCH", usersAdmin, usersPath + panelUser, map[string]any{"sys_admin": true, "support": true},
			"cannot give a user level admin_support: above the calling key's admin"},
		{"raise itself above itself", "PATCH", usersAdmin, usersPath + opsUser, map[string]any{"support": true},
			"cannot give a user level admin_support: above the calling key's admin"},
		{"delete a user with a stronger key", "DELETE", usersAdmin, usersPath + strongUser, nil,
			"cannot delete user " + strongUser + " with key " + strongKey.ID + ": it holds scope public, which the calling key does not hold"},
		{"a public admin demotes the admin_support user", "PATCH", publicAdmin, usersPath + bootUser, map[string]any{"support": false},
			"cannot change user " + bootUser + ": its level admin_support is above the calling key's admin"},
		// Deleting a domain deletes its users and their keys: the bootstrap domain holds the
		// admin_support bootstrap user and its public key.
		{"delete the bootstrap domain", "DELETE", publicAdmin, "/api/engine/v2/domains/" + w.domainID, nil,
			"cannot delete user " + bootUser + ": its level admin_support is above the calling key's admin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := w.storeState(t)
			r := w.must(t, call{method: tc.method, path: tc.path, body: tc.body, key: tc.key})
			wantError(t, tc.method+" "+tc.path, r, http.StatusForbidden, tc.wantErr)
			w.unchanged(t, before)
		})
	}
	// The bootstrap key still works: nothing above deleted or neutralised it.
	w.admin(t, "GET", "/api/engine/v2/api_keys", nil, http.StatusOK)

	t.Run("within the caller's rights", func(t *testing.T) {
		if r := w.must(t, call{method: "DELETE", path: keysPath + weak.ID, key: keysAdmin}); r.status != http.StatusAccepted {
			t.Errorf("delete a key it could mint: %d %s", r.status, r.body)
		}
		if r := w.must(t, call{method: "PATCH", path: usersPath + panelUser, key: usersAdmin, body: map[string]any{"sys_admin": true}}); r.status != http.StatusOK {
			t.Errorf("promote a user to its own level: %d %s", r.status, r.body)
		}
		if r := w.must(t, call{method: "PATCH", path: usersPath + panelUser, key: usersAdmin, body: map[string]any{"sys_admin": false}}); r.status != http.StatusOK {
			t.Errorf("demote a user at its own level: %d %s", r.status, r.body)
		}
		// Self-service: the bootstrap key renames its own admin_support user.
		if r := w.must(t, call{method: "PATCH", path: usersPath + bootUser, key: w.AdminKey, body: map[string]any{"name": "Root", "email": "root@example.com"}}); r.status != http.StatusOK {
			t.Errorf("rename its own user: %d %s", r.status, r.body)
		}
		// The public admin deletes the strong user, its key with it.
		w.admin(t, "DELETE", usersPath+strongUser, nil, http.StatusAccepted)
		if r := w.must(t, call{method: "GET", path: keysPath + strongKey.ID, key: w.AdminKey}); r.status != http.StatusNotFound {
			t.Errorf("the strong user's key after its delete: %d %s", r.status, r.body)
		}
	})
}

// TestLifetimeCap: a key that expires mints, and changes keys into, only keys that expire no
// later than it does, and cannot touch or delete a key that outlives it: it can neither make
// itself permanent nor mint a permanent key.
func TestLifetimeCap(t *testing.T) {
	w := newWorld(t, "")
	bootstrapID, _, _ := strings.Cut(w.AdminKey, ".")
	opsUser := w.createUser(t, "Temp Ops", true)
	exp := time.Now().Add(time.Hour).Unix()
	temp := w.createKey(t, map[string]any{"name": "temp", "user_id": opsUser, "permissions": "admin", "scopes": []string{"public"}, "expires_at": exp})
	// A permanent key otherwise within the temporary key's rights (the bootstrap key is above
	// them: admin_support).
	permanentID := w.createKey(t, map[string]any{"name": "permanent", "user_id": opsUser, "permissions": "admin", "scopes": []string{"public"}}).ID
	tempKey := *temp.XAPIKey
	outlives := fmt.Sprintf("cannot grant a key that outlives the calling key (it expires at %d)", exp)
	mint := func(name string, expiresAt any) map[string]any {
		m := map[string]any{"name": name, "user_id": opsUser, "permissions": "admin", "scopes": []string{"public"}}
		if expiresAt != "absent" {
			m["expires_at"] = expiresAt
		}
		return m
	}
	keysPath := "/api/engine/v2/api_keys"
	cases := []struct {
		name, method, path string
		body               any
		wantErr            string
	}{
		{"make itself permanent", "PATCH", keysPath + "/" + temp.ID, map[string]any{"expires_at": nil}, outlives},
		{"extend itself", "PATCH", keysPath + "/" + temp.ID, map[string]any{"expires_at": exp + 3600}, outlives},
		{"mint a permanent key", "POST", keysPath, mint("forever", "absent"), outlives},
		{"mint a permanent key with null", "POST", keysPath, mint("forever", nil), outlives},
		{"mint a key that outlives it", "POST", keysPath, mint("longer", exp+1), outlives},
		{"rename a permanent key", "PATCH", keysPath + "/" + permanentID, map[string]any{"name": "mine"},
			fmt.Sprintf("cannot change key %s: it outlives the calling key, which expires at %d", permanentID, exp)},
		{"delete a permanent key", "DELETE", keysPath + "/" + permanentID, nil,
			fmt.Sprintf("cannot delete key %s: it outlives the calling key, which expires at %d", permanentID, exp)},
		{"delete the bootstrap key", "DELETE", keysPath + "/" + bootstrapID, nil,
			fmt.Sprintf("cannot delete key %s: its permissions admin_support are above the calling key's admin", bootstrapID)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := w.storeState(t)
			r := w.must(t, call{method: tc.method, path: tc.path, body: tc.body, key: tempKey})
			wantError(t, tc.method+" "+tc.path, r, http.StatusForbidden, tc.wantErr)
			w.unchanged(t, before)
		})
	}
	t.Run("within its lifetime", func(t *testing.T) {
		k := w.createKeyAs(t, tempKey, mint("as long", exp))
		if k.ExpiresAt == nil || *k.ExpiresAt != exp {
			t.Errorf("minted %+v, want expires_at %d", k, exp)
		}
		if r := w.must(t, call{method: "PATCH", path: keysPath + "/" + temp.ID, key: tempKey, body: map[string]any{"expires_at": exp - 60}}); r.status != http.StatusOK {
			t.Errorf("shorten itself: %d %s", r.status, r.body)
		}
	})
}

// TestLinkHeaderEchoesNoKey: the Link header of a key listing carries only the listing's own
// parameters (authority_id, q, limit, offset), so a key passed under any other parameter name
// is not echoed back.
func TestLinkHeaderEchoesNoKey(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Listed", false)
	w.createKey(t, bookingPanel(userID, "panel one"))
	w.createKey(t, bookingPanel(userID, "panel two"))
	_, secret, _ := strings.Cut(w.AdminKey, ".")
	q := url.Values{"limit": {"1"}, "authority_id": {w.domainID}, "q": {"panel"}, "x": {w.AdminKey}, "token": {secret}, "api-key": {w.AdminKey}}
	r := w.admin(t, "GET", "/api/engine/v2/api_keys?"+q.Encode(), nil, http.StatusOK)
	link := r.header.Get("Link")
	if link == "" {
		t.Fatalf("no Link header; headers %v", r.header)
	}
	if strings.Contains(link, secret) || strings.Contains(link, url.QueryEscape(secret)) {
		t.Errorf("Link echoes the key: %s", link)
	}
	want := "</api/engine/v2/api_keys?" + url.Values{"authority_id": {w.domainID}, "q": {"panel"}, "limit": {"1"}, "offset": {"1"}}.Encode() + `>; rel="next"`
	if link != want {
		t.Errorf("Link = %s, want %s", link, want)
	}
}

// newKeyBody is a create-key request body named "minted".
func newKeyBody(user, permissions string, scopes ...string) map[string]any {
	return map[string]any{"name": "minted", "user_id": user, "permissions": permissions, "scopes": scopes}
}

package keys

import (
	"strings"
	"testing"
)

func TestScopesCover(t *testing.T) {
	tests := []struct {
		held []string
		want string
		ok   bool
	}{
		// public covers everything, guest included (a deliberate choice,
		// docs/keys.md#the-minting-cap: see ScopesCover).
		{[]string{"public"}, "public", true},
		{[]string{"public"}, "systems", true},
		{[]string{"public"}, "systems.read", true},
		{[]string{"public"}, "zones.WRITE", true},
		{[]string{"public"}, "guest", true},
		{[]string{"PUBLIC"}, "systems", false}, // resources compare exactly, as in the policy

		// x covers x, x.read, x.write; nothing else.
		{[]string{"systems"}, "systems", true},
		{[]string{"systems"}, "systems.read", true},
		{[]string{"systems"}, "systems.write", true},
		{[]string{"systems"}, "zones.read", false},
		{[]string{"systems"}, "public", false},
		{[]string{"systems"}, "public.read", false},
		{[]string{"systems"}, "control", false},
		{[]string{"systems"}, "systems_x", false},

		// x.read covers x.read only; x.write covers x.write only.
		{[]string{"systems.read"}, "systems.read", true},
		{[]string{"systems.read"}, "systems.write", false},
		{[]string{"systems.read"}, "systems", false},
		{[]string{"systems.write"}, "systems.write", true},
		{[]string{"systems.write"}, "systems.read", false},
		{[]string{"systems.write"}, "systems", false},

		// Entries for one resource add up.
		{[]string{"systems.read", "systems.write"}, "systems", true},
		{[]string{"public.read", "systems.write"}, "systems", true},
		{[]string{"public.read", "public.write"}, "public", true},
		{[]string{"public.read", "public.write"}, "zones", true},

		// public.read covers every *.read, public.write every *.write.
		{[]string{"public.read"}, "systems.read", true},
		{[]string{"public.read"}, "public.read", true},
		{[]string{"public.read"}, "systems.write", false},
		{[]string{"public.read"}, "systems", false},
		{[]string{"public.read"}, "public", false},
		{[]string{"public.read"}, "guest", false},
		{[]string{"public.write"}, "zones.write", true},
		{[]string{"public.write"}, "zones.read", false},
		{[]string{"public.write"}, "public.write", true},

		// Suffixes in any case, on either side.
		{[]string{"systems.READ"}, "systems.read", true},
		{[]string{"systems.read"}, "systems.Read", true},
		{[]string{"public.Write"}, "metadata.WRITE", true},

		// guest: by guest, public, or what covers public; never by its parts or by others.
		{[]string{"guest"}, "guest", true},
		{[]string{"guest.read", "guest.write"}, "guest", false},
		{[]string{"api_keys"}, "guest", false},
		{[]string{"public.read", "public.write"}, "guest", true},
		{[]string{"guest"}, "systems.read", false},

		// Nothing covers anything for a key without scopes.
		{nil, "systems.read", false},
		{[]string{}, "guest", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.held, ",")+"/"+tt.want, func(t *testing.T) {
			if got := ScopesCover(tt.held, tt.want); got != tt.ok {
				t.Errorf("ScopesCover(%q, %q) = %v, want %v", tt.held, tt.want, got, tt.ok)
			}
		})
	}
}

func TestCheckGrant(t *testing.T) {
	tests := []struct {
		name       string
		held       []string
		heldLevel  Permission
		scopes     []string
		level      Permission
		wantErrMsg string // "" for allowed
	}{
		{"api_keys admin mints public", []string{"api_keys"}, PermissionAdmin, []string{"public"}, PermissionUser,
			"cannot grant scope public: the calling key does not hold it"},
		{"public admin mints admin_support", []string{"public"}, PermissionAdmin, []string{"systems"}, PermissionAdminSupport,
			"cannot grant permissions admin_support: above the calling key's admin"},
		{"the first scope refused is named", []string{"systems"}, PermissionAdmin, []string{"systems.read", "zones", "users"}, PermissionUser,
			"cannot grant scope zones: the calling key does not hold it"},
		{"the scope is named before the level", []string{"systems"}, PermissionUser, []string{"zones"}, PermissionAdmin,
			"cannot grant scope zones: the calling key does not hold it"},
		{"equal level and subset", []string{"systems", "zones.read"}, PermissionSupport, []string{"systems.write", "zones.read"}, PermissionSupport, ""},
		{"no scopes at user level", []string{"api_keys"}, PermissionAdmin, []string{}, PermissionUser, ""},
		{"invalid level left to validation", []string{"public"}, PermissionAdmin, nil, Permission("root"), ""},
		{"no caller level grants nothing", nil, "", nil, PermissionUser,
			"cannot grant permissions user: above the calling key's none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckGrant(tt.held, tt.heldLevel, tt.scopes, tt.level)
			switch {
			case tt.wantErrMsg == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tt.wantErrMsg != "" && (ErrorCode(err) != EFORBIDDEN || ErrorMessage(err) != tt.wantErrMsg):
				t.Fatalf("err = %v (code %s), want EFORBIDDEN %q", err, ErrorCode(err), tt.wantErrMsg)
			}
		})
	}
}

func TestCallerCheckKeyChange(t *testing.T) {
	caller := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"api_keys", "systems"}}, Permissions: PermissionAdmin}
	key := func(p Permission, scopes ...string) *APIKey { return &APIKey{ID: "k1", Scopes: scopes, Permissions: p} }
	tests := []struct {
		name          string
		before, after *APIKey
		want          string
	}{
		{"rename a weaker key", key(PermissionUser, "systems.read"), key(PermissionUser, "systems.read"), ""},
		{"narrow a weaker key", key(PermissionUser, "systems"), key(PermissionUser, "systems.read"), ""},
		{"widen its own key", key(PermissionAdmin, "api_keys"), key(PermissionAdmin, "api_keys", "public"),
			"cannot grant scope public: the calling key does not hold it"},
		{"raise a key's level", key(PermissionUser, "systems"), key(PermissionAdminSupport, "systems"),
			"cannot grant permissions admin_support: above the calling key's admin"},
		{"touch a key with a scope it lacks", key(PermissionUser, "public"), key(PermissionUser, "public"),
			"cannot change key k1: it holds scope public, which the calling key does not hold"},
		{"narrow a stronger key", key(PermissionUser, "public"), key(PermissionUser),
			"cannot change key k1: it holds scope public, which the calling key does not hold"},
		{"touch a key above its level", key(PermissionAdminSupport, "systems"), key(PermissionUser, "systems"),
			"cannot change key k1: its permissions admin_support are above the calling key's admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := caller.CheckKeyChange(tt.before, tt.after)
			if got := ErrorMessage(err); got != tt.want || (err != nil && ErrorCode(err) != EFORBIDDEN) {
				t.Errorf("err = %v (code %s), want %q", err, ErrorCode(err), tt.want)
			}
		})
	}
	var nobody *Caller
	if err := nobody.CheckMint(&APIKey{Permissions: PermissionUser}); ErrorCode(err) != EFORBIDDEN {
		t.Errorf("a nil caller granted a key: %v", err)
	}
	if nobody.IsAdmin() || (&Caller{Permissions: PermissionSupport}).IsAdmin() || !(&Caller{Permissions: PermissionAdminSupport}).IsAdmin() {
		t.Error("IsAdmin: want true from admin up only")
	}
}

func TestCheckScopeLimits(t *testing.T) {
	many := func(n, size int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = strings.Repeat("a", size)
		}
		return out
	}
	tests := []struct {
		name   string
		scopes []string
		want   []string // reasons on field "scopes"
	}{
		{"64 scopes of 40", many(64, 40), nil},
		{"one of 64", many(1, 64), nil},
		{"65 scopes", many(65, 5), []string{"has too many entries (maximum is 64)"}},
		{"one of 65", many(1, 65), []string{"has an entry that is too long (maximum is 64 characters)"}},
		{"64 of 64 exceeds the total", many(64, 64), []string{"is too long in all (maximum is 3072 characters, joined by commas)"}},
		{"10000 long ones", many(10000, 100), []string{
			"has too many entries (maximum is 64)",
			"has an entry that is too long (maximum is 64 characters)",
			"is too long in all (maximum is 3072 characters, joined by commas)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range CheckScopeLimits(tt.scopes, nil) {
				if f.Field != "scopes" {
					t.Errorf("failure on field %q, want scopes", f.Field)
				}
				got = append(got, f.Reason)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("reasons %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCallerLifetimeCap: a caller whose key expires at E may mint, or change a key into, only
// a key that expires at E or before; a key that never expires, or outlives E, is stronger, so
// the caller may neither change nor delete it. A caller whose key never expires is not limited.
func TestCallerLifetimeCap(t *testing.T) {
	at := func(v int64) *int64 { return &v }
	const e = 1_795_000_000
	expiring := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"api_keys"}, ExpiresAt: at(e)}, Permissions: PermissionAdmin}
	permanent := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"api_keys"}}, Permissions: PermissionAdmin}
	key := func(exp *int64) *APIKey {
		return &APIKey{ID: "k1", Scopes: []string{"api_keys.read"}, Permissions: PermissionUser, ExpiresAt: exp}
	}
	outlives := "cannot grant a key that outlives the calling key (it expires at 1795000000)"
	tests := []struct {
		name          string
		caller        *Caller
		before, after *APIKey // before nil: a create
		want          string
		wantDelete    string // CheckKeyDelete(before), when before is set
	}{
		{"create a permanent key", expiring, nil, key(nil), outlives, ""},
		{"create a key that outlives it", expiring, nil, key(at(e + 1)), outlives, ""},
		{"create a key that expires with it", expiring, nil, key(at(e)), "", ""},
		{"create a key that expires before it", expiring, nil, key(at(e - 3600)), "", ""},
		{"a permanent caller creates a permanent key", permanent, nil, key(nil), "", ""},
		{"make its own key permanent", expiring, key(at(e)), key(nil), outlives, ""},
		{"extend its own key", expiring, key(at(e)), key(at(e + 1)), outlives, ""},
		{"shorten its own key", expiring, key(at(e)), key(at(e - 1)), "", ""},
		{"rename a permanent key", expiring, key(nil), key(nil),
			"cannot change key k1: it outlives the calling key, which expires at 1795000000",
			"cannot delete key k1: it outlives the calling key, which expires at 1795000000"},
		{"shorten a key that outlives it", expiring, key(at(e + 10)), key(at(e)),
			"cannot change key k1: it outlives the calling key, which expires at 1795000000",
			"cannot delete key k1: it outlives the calling key, which expires at 1795000000"},
		{"a permanent caller changes a permanent key", permanent, key(nil), key(at(e)), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkCap(t, tt.caller, tt.before, tt.after, tt.want, tt.wantDelete) })
	}
}

// TestCallerCheckKeyDelete: deleting a key needs the "before" half of the minting cap: the
// scopes, level and lifetime of the key deleted must be within the caller's.
func TestCallerCheckKeyDelete(t *testing.T) {
	caller := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"api_keys"}}, Permissions: PermissionAdmin}
	tests := []struct {
		name string
		k    *APIKey
		want string
	}{
		{"a weaker key", &APIKey{ID: "k1", Scopes: []string{"api_keys.read"}, Permissions: PermissionUser}, ""},
		{"itself", &APIKey{ID: "caller", Scopes: []string{"api_keys"}, Permissions: PermissionAdmin}, ""},
		{"a public key", &APIKey{ID: "k1", Scopes: []string{"public"}, Permissions: PermissionAdmin},
			"cannot delete key k1: it holds scope public, which the calling key does not hold"},
		{"a key above its level", &APIKey{ID: "k1", Scopes: []string{"api_keys"}, Permissions: PermissionAdminSupport},
			"cannot delete key k1: its permissions admin_support are above the calling key's admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := caller.CheckKeyDelete(tt.k)
			if got := ErrorMessage(err); got != tt.want || (err != nil && ErrorCode(err) != EFORBIDDEN) {
				t.Errorf("err = %v (code %s), want %q", err, ErrorCode(err), tt.want)
			}
		})
	}
	var nobody *Caller
	if err := nobody.CheckKeyDelete(&APIKey{ID: "k1", Permissions: PermissionUser}); ErrorCode(err) != EFORBIDDEN {
		t.Errorf("a nil caller deleted a key: %v", err)
	}
}

// TestCallerCheckUserChange: an admin creates, changes and deletes only users at or below its
// effective level, never raises one above it, and deletes a user only if it could delete each
// of the user's keys.
func TestCallerCheckUserChange(t *testing.T) {
	admin := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"users"}}, Permissions: PermissionAdmin}
	user := func(sysAdmin, support bool) *User { return &User{ID: "u1", SysAdmin: sysAdmin, Support: support} }
	tests := []struct {
		name          string
		before, after *User
		keys          []*APIKey
		want          string
	}{
		{"create an admin", nil, user(true, false), nil, ""},
		{"create an admin_support user", nil, user(true, true),
			nil, "cannot give a user level admin_support: above the calling key's admin"},
		{"promote a user to admin", user(false, false), user(true, false), nil, ""},
		{"promote a user above itself", user(false, true), user(true, true), nil,
			"cannot give a user level admin_support: above the calling key's admin"},
		{"demote an admin_support user", user(true, true), user(false, false), nil,
			"cannot change user u1: its level admin_support is above the calling key's admin"},
		{"rename an admin_support user", user(true, true), user(true, true), nil,
			"cannot change user u1: its level admin_support is above the calling key's admin"},
		{"delete an admin", user(true, false), nil, nil, ""},
		{"delete an admin_support user", user(true, true), nil, nil,
			"cannot delete user u1: its level admin_support is above the calling key's admin"},
		{"delete a user with a weaker key", user(false, false), nil,
			[]*APIKey{{ID: "k1", Scopes: []string{"users.read"}, Permissions: PermissionUser}}, ""},
		{"delete a user with a stronger key", user(true, false), nil,
			[]*APIKey{{ID: "k1", Scopes: []string{"users.read"}}, {ID: "k2", Scopes: []string{"public"}, Permissions: PermissionAdmin}},
			"cannot delete user u1 with key k2: it holds scope public, which the calling key does not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := admin.CheckUserChange(tt.before, tt.after, tt.keys)
			if got := ErrorMessage(err); got != tt.want || (err != nil && ErrorCode(err) != EFORBIDDEN) {
				t.Errorf("err = %v (code %s), want %q", err, ErrorCode(err), tt.want)
			}
		})
	}
	var nobody *Caller
	if err := nobody.CheckUserChange(nil, user(false, false), nil); ErrorCode(err) != EFORBIDDEN {
		t.Errorf("a nil caller created a user: %v", err)
	}
}

// TestCallerNetworkCap: a caller whose key has an allow-list may mint, change or delete only
// keys whose allow-list lies within it; a key usable from any network, or from a network
// outside the caller's, is stronger. A caller without an allow-list is not limited.
func TestCallerNetworkCap(t *testing.T) {
	office := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"api_keys"}, AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}}, Permissions: PermissionAdmin}
	anywhere := &Caller{Key: &APIKey{ID: "caller", Scopes: []string{"api_keys"}}, Permissions: PermissionAdmin}
	key := func(cidrs ...string) *APIKey {
		return &APIKey{ID: "k1", Scopes: []string{"api_keys.read"}, Permissions: PermissionUser, AllowedCIDRs: cidrs}
	}
	const mintAny = "cannot grant a key usable from any network: the calling key is allowed only from 10.0.0.0/8, 2001:db8::/32"
	tests := []struct {
		name          string
		caller        *Caller
		before, after *APIKey // before nil: a create
		want          string
		wantDelete    string
	}{
		{"mint an unconfined key", office, nil, key(), mintAny, ""},
		{"mint a key in a subnet", office, nil, key("10.1.0.0/16", "2001:db8:1::/48"), "", ""},
		{"mint a key for the same network", office, nil, key("10.0.0.0/8"), "", ""},
		{"mint a key for one address inside", office, nil, key("10.9.9.9/32"), "", ""},
		{"mint a key for a wider network", office, nil, key("10.0.0.0/7"),
			"cannot grant a key usable from 10.0.0.0/7: the calling key is allowed only from 10.0.0.0/8, 2001:db8::/32", ""},
		{"mint a key for another network", office, nil, key("10.1.0.0/16", "192.0.2.0/24"),
			"cannot grant a key usable from 192.0.2.0/24: the calling key is allowed only from 10.0.0.0/8, 2001:db8::/32", ""},
		{"lift the allow-list of a confined key", office, key("10.0.0.0/8"), key(), mintAny, ""},
		{"touch an unconfined key", office, key(), key("10.0.0.0/8"),
			"cannot change key k1: it may be used from any network, outside the calling key's networks",
			"cannot delete key k1: it may be used from any network, outside the calling key's networks"},
		{"an unconfined caller mints anything", anywhere, nil, key(), "", ""},
		{"an unconfined caller lifts an allow-list", anywhere, key("192.0.2.0/24"), key(), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkCap(t, tt.caller, tt.before, tt.after, tt.want, tt.wantDelete) })
	}
}

// checkCap checks the minting cap's verdicts for one case: CheckMint(after) when before is
// nil (a create), else CheckKeyChange(before, after) and CheckKeyDelete(before); each must be
// the message wanted ("" for allowed), and every refusal EFORBIDDEN.
func checkCap(t *testing.T, caller *Caller, before, after *APIKey, want, wantDelete string) {
	t.Helper()
	var err error
	if before == nil {
		err = caller.CheckMint(after)
	} else {
		err = caller.CheckKeyChange(before, after)
		derr := caller.CheckKeyDelete(before)
		if got := ErrorMessage(derr); got != wantDelete || (derr != nil && ErrorCode(derr) != EFORBIDDEN) {
			t.Errorf("delete: err = %v (code %s), want %q", derr, ErrorCode(derr), wantDelete)
		}
	}
	if got := ErrorMessage(err); got != want || (err != nil && ErrorCode(err) != EFORBIDDEN) {
		t.Errorf("err = %v (code %s), want %q", err, ErrorCode(err), want)
	}
}

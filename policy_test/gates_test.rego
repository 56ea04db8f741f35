# Role gates against permission levels (docs/policy-contract.md#permission-levels-and-gates):
# every gate (none, support, admin, admin_or_self) against every level, self and other on PATCH
# /users/:id, and keys whose level is above their user's (capped; the output permissions is the
# capped level). Every row uses the public scope, which grants the scope but never lifts a gate.
package keyauthz_test

gate_cases := [
	{"note": "none: user", "req": "GET zones", "scopes": ["public"], "perm": "user", "want": 200, "perms": "user"},
	{"note": "none: support", "req": "GET zones", "scopes": ["public"], "perm": "support", "want": 200, "perms": "support"},
	{"note": "none: admin", "req": "GET zones", "scopes": ["public"], "perm": "admin", "want": 200, "perms": "admin"},
	{"note": "none: admin_support", "req": "GET zones", "scopes": ["public"], "perm": "admin_support", "want": 200, "perms": "admin_support"},
	{"note": "support: user", "req": "POST zones", "scopes": ["public"], "perm": "user", "want": 403, "msg": "requires support permissions"},
	{"note": "support: support", "req": "POST zones", "scopes": ["public"], "perm": "support", "want": 200},
	{"note": "support: admin", "req": "POST zones", "scopes": ["public"], "perm": "admin", "want": 200},
	{"note": "support: admin_support", "req": "POST zones", "scopes": ["public"], "perm": "admin_support", "want": 200},
	{"note": "admin: user", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "user", "want": 403, "msg": "requires admin permissions"},
	{"note": "admin: support", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "admin: admin", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "admin", "want": 200},
	{"note": "admin: admin_support", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "admin_support", "want": 200},
	{"note": "admin_or_self, other: user", "req": "PATCH users/user-2", "scopes": ["public"], "perm": "user", "want": 403, "msg": "requires admin permissions or the user's own record"},
	{"note": "admin_or_self, other: support", "req": "PATCH users/user-2", "scopes": ["public"], "perm": "support", "want": 403},
	{"note": "admin_or_self, other: admin", "req": "PATCH users/user-2", "scopes": ["public"], "perm": "admin", "want": 200},
	{"note": "admin_or_self, other: admin_support", "req": "PATCH users/user-2", "scopes": ["public"], "perm": "admin_support", "want": 200},
	{"note": "admin_or_self, self: user", "req": "PATCH users/user-1", "scopes": ["public"], "perm": "user", "want": 200},
	{"note": "admin_or_self, self: support", "req": "PUT users/user-1", "scopes": ["users.write"], "perm": "support", "want": 200},
	{"note": "admin_or_self, self: admin", "req": "PATCH users/user-1", "scopes": ["users"], "perm": "admin", "want": 200},
	{"note": "admin_or_self, self: admin_support", "req": "PUT users/user-1", "scopes": ["public"], "perm": "admin_support", "want": 200},
]

test_gates[c.note] if {
	some c in gate_cases
	ok(c)
}

gate_self_and_cap_cases := [
	{"note": "self is only the user's own id", "req": "PATCH users/user-1", "scopes": ["public"], "uid": "user-10", "want": 403},
	{"note": "delete of self is still admin", "req": "DELETE users/user-1", "scopes": ["public"], "want": 403, "msg": "requires admin permissions"},
	{"note": "capped: admin key of a plain user", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "admin", "user": "user", "want": 403, "perms": "user"},
	{"note": "capped: admin key of a plain user on api_keys", "req": "GET api_keys", "scopes": ["api_keys"], "perm": "admin", "user": "user", "want": 403, "msg": "requires admin permissions", "perms": "user"},
	{"note": "capped: admin_support key of a support user", "req": "POST zones", "scopes": ["public"], "perm": "admin_support", "user": "support", "want": 200, "perms": "support"},
	{"note": "capped: admin_support key of a support user, admin route", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "admin_support", "user": "support", "want": 403, "perms": "support"},
	{"note": "capped: admin key of an admin_support user", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "admin", "user": "admin_support", "want": 200, "perms": "admin"},
	{"note": "not raised: user key of an admin user", "req": "DELETE systems/sys-1", "scopes": ["public"], "perm": "user", "user": "admin", "want": 403, "perms": "user"},
	{"note": "not raised: support key of an admin user", "req": "POST zones", "scopes": ["public"], "perm": "support", "user": "admin", "want": 200, "perms": "support"},
	{"note": "unknown permissions count as user", "req": "POST zones", "scopes": ["public"], "perm": "root", "user": "admin", "want": 403, "perms": "user"},
]

test_gates_self_and_cap[c.note] if {
	some c in gate_self_and_cap_cases
	ok(c)
}

# METADATA
# title: keyauthz test helpers
# description: |
#   Builds a policy input from a compact test row and compares the decision with the row's
#   wanted result. A row is an object:
#     note    the case name (the sub-test name in `opa test -v`)
#     req     "METHOD path[?query]"; a path without a leading "/" is under /api/engine/v2
#             ("GET systems/sys-1"), one with it is taken as is ("GET /api/staff/v1/bookings");
#             the method is sent as written ("get", or "" in " systems")
#     scopes  the key's scopes; no "scopes" field means no credential at all
#     perm    the key's permissions (default "user")
#     user    the user's level, as flags (default: the key's perm): user, support, admin,
#             admin_support
#     uid     the user's id (default "user-1"); groups: the user's groups (default [])
#     host    the request host (default acme.example.com; unknown hosts have no domain)
#     keydom  the key's authority_id (default authority-acme, the domain of acme.example.com)
#     proto   "http" (default) or "websocket"; source: "header" (default), "query", "cookie"
#     xsite   the request's cross_site (default false)
#     want    the wanted status; allow is wanted exactly when want is 200
#     msg, perms, route: when present, the wanted message, permissions and route
package keyauthz_test

import data.keyauthz

# The booking panel and map kiosk keys of PlaceOS's X-API-Key docs.
panel := ["users.read", "systems.read", "control", "zones.read", "metadata.read"]

kiosk := ["public.read"]

domains := {
	"acme.example.com": {"id": "authority-acme", "name": "Acme", "domain": "acme.example.com"},
	"other.example.com": {"id": "authority-other", "name": "Other", "domain": "other.example.com"},
}

_flags := {
	"user": {"sys_admin": false, "support": false},
	"support": {"sys_admin": false, "support": true},
	"admin": {"sys_admin": true, "support": false},
	"admin_support": {"sys_admin": true, "support": true},
}

# input_for builds the policy input of row c.
input_for(c) := object.union_n([{"request": _request(c)}, _domain(c), _key(c)])

_request(c) := {
	"method": method,
	"path": _path(parts[0]),
	"host": object.get(c, "host", "acme.example.com"),
	"protocol": object.get(c, "proto", "http"),
	"query": _query(parts),
	"cross_site": object.get(c, "xsite", false),
} if {
	[method, target] := split(c.req, " ")
	parts := split(target, "?")
}

_path(p) := p if startswith(p, "/")

_path(p) := concat("/", ["/api/engine/v2", p]) if not startswith(p, "/")

_query(parts) := {} if count(parts) == 1

_query(parts) := urlquery.decode_object(parts[1]) if count(parts) == 2

_domain(c) := {"domain": d} if d := domains[object.get(c, "host", "acme.example.com")]

else := {}

_key(c) := {} if not "scopes" in object.keys(c)

_key(c) := {"key": key, "user": user} if {
	"scopes" in object.keys(c)
	perm := object.get(c, "perm", "user")
	key := {
		"id": "0123456789abcdef0123456789abcdef",
		"authority_id": object.get(c, "keydom", "authority-acme"),
		"scopes": c.scopes,
		"permissions": perm,
		"source": object.get(c, "source", "header"),
	}
	user := object.union(_flags[object.get(c, "user", perm)], {
		"id": object.get(c, "uid", "user-1"),
		"authority_id": "authority-acme",
		"name": "Panel User",
		"email": "panel@acme.example.com",
		"groups": object.get(c, "groups", []),
	})
}

# route_index is the index of the route table as keyauthz builds it once per load and stores it
# at data.keyauthz.routes.index. It is a golden copy, testdata/route_index/data.json, holding
# the table it was built from; rego_test.go checks it against routing.built_index and rewrites
# it with `go test ./policy_test -update`. Building it here instead would rebuild it for every
# row (a `with input` drops the cache), traced, which takes seconds under `opa test -v`.
route_index := data.testdata.route_index.index

# test_route_index_fixture_is_for_this_table fails when the table changed and the golden index
# was not rewritten.
test_route_index_fixture_is_for_this_table if data.testdata.route_index.table == data.keyauthz.routes.table

# decision is the decision for row c, with the index in place as in production.
decision(c) := d if {
	d := keyauthz.decision with input as input_for(c) with data.keyauthz.routes.index as route_index
}

# got is the part of the decision for row c that the row constrains.
got(c) := {k: d[k] | some k in _checked(c)} if d := decision(c)

# want is what row c expects of the decision.
want(c) := object.union(
	{"status": c.want, "allow": c.want == 200},
	{k: c[f] | some f, k in {"msg": "message", "perms": "permissions", "route": "route"}; c[f]},
)

_checked(c) := {"status", "allow"} | {k | some f, k in {"msg": "message", "perms": "permissions", "route": "route"}; c[f]}

# ok is true when the decision for row c is the wanted one; when it is not, it prints both, so
# that the failing sub-test shows what went wrong.
ok(c) if got(c) == want(c)

ok(c) if {
	got(c) != want(c)
	print(c.note, "want", want(c), "got", got(c))
	false
}

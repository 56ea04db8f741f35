# The stored route index and the one the policy computes must decide alike: keyauthz evaluates
# routing.built_index once per load and stores it at data.keyauthz.routes.index (as JSON, in a
# bundle), while a plain `opa eval` or `opa test` of policies/ has no stored index and computes
# it on each evaluation. Every row of the shipped table, with each of its methods (a "*" row
# with GET and DELETE), is decided both ways for several callers and spellings of its path, and
# the two decisions must be equal in full. The stored index here is the golden JSON copy
# (route_index, in step with the table: TestRouteIndexFixture), so JSON's changes (sets become
# arrays, numbers lose their kind) would show.
package keyauthz_test

import data.keyauthz
import data.keyauthz.routing

# agreement_requests lists one request per table row and method: each parameter bound to "p1",
# a "/*" prefix followed by one more segment.
agreement_requests contains {"method": m, "path": path, "row": r} if {
	some r in data.keyauthz.routes.table
	some rm in r.methods
	some m in _agreement_methods(upper(rm))
	segs := [_agreement_segment(s) | some s in split(trim_prefix(r.path, "/"), "/")]
	path := concat("/", ["", concat("/", segs)])
}

_agreement_methods("*") := ["GET", "DELETE"]

_agreement_methods("GET") := ["GET", "HEAD"]

_agreement_methods(m) := [m] if not m in {"*", "GET"}

_agreement_segment(s) := "p1" if startswith(s, ":")

_agreement_segment("*") := "q"

_agreement_segment(s) := s if {
	not startswith(s, ":")
	s != "*"
}

# The callers: a key holding the row's scopes at the highest level, a public.read key of a plain
# user, a guest key whose user has the role "p1", and no key.
_agreement_callers(q) := [
	_agreement_key(object.get(q.row, "scopes", []), "admin_support"),
	_agreement_key(["public.read"], "user"),
	_agreement_key(["guest"], "user"),
	{"domain": domains["acme.example.com"]},
]

_agreement_input(q, path, caller) := object.union(caller, {"request": {
	"method": q.method, "path": path, "host": "acme.example.com",
	"protocol": "http", "query": {}, "cross_site": false,
}})

_agreement_key(scopes, perm) := {
	"domain": domains["acme.example.com"],
	"key": {"id": "k", "authority_id": "authority-acme", "scopes": scopes, "permissions": perm, "source": "header"},
	"user": {
		"id": "p1", "authority_id": "authority-acme", "name": "U", "email": "u@acme.example.com",
		"sys_admin": perm == "admin_support", "support": perm == "admin_support", "groups": ["p1"],
	},
}

# Each caller on each request, and the first caller also with the path upper-cased (the case
# rule) and with a ".json" suffix (the format rule); one test each, so that each stays within
# `opa test`'s time-out.
test_index_agrees_scoped_key if _all_agree(0, "as sent")

test_index_agrees_public_key if _all_agree(1, "as sent")

test_index_agrees_guest_key if _all_agree(2, "as sent")

test_index_agrees_no_key if _all_agree(3, "as sent")

test_index_agrees_upper_case if _all_agree(0, "upper-case")

test_index_agrees_json_suffix if _all_agree(0, ".json")

_all_agree(caller, spelling) if {
	# The index the policy computes when none is stored: built once here (routing.index computes
	# this same value on every evaluation without a stored index, which would take minutes for
	# all rows; test_absent_index_agrees checks that path itself on a sample).
	computed := routing.built_index
	every q in agreement_requests {
		_agree(_agreement_input(q, _spelled(spelling, q.path), _agreement_callers(q)[caller]), computed)
	}
}

_spelled("as sent", path) := path

_spelled("upper-case", path) := upper(path)

_spelled(".json", path) := concat("", [path, ".json"])

_agree(x, computed) if {
	stored := keyauthz.decision with input as x with data.keyauthz.routes.index as route_index
	stored == keyauthz.decision with input as x with data.keyauthz.routes.index as computed
}

_agree(x, computed) if {
	stored := keyauthz.decision with input as x with data.keyauthz.routes.index as route_index
	d := keyauthz.decision with input as x with data.keyauthz.routes.index as computed
	stored != d
	print(x.request, "stored index", stored, "computed index", d)
	false
}

# With no index stored at all, the policy computes it on each evaluation: a sample of requests
# (a parameter route that lets guests in, the admin gate, a "/*" prefix) decides as with the stored
# index.
test_absent_index_agrees[path] if {
	some path in ["/api/engine/v2/systems/p1", "/api/engine/v2/api_keys", "/api/staff/v1/q"]
	x := _agreement_input({"method": "GET", "path": path, "row": {"scopes": ["systems", "api_keys", "public"]}}, path, _agreement_callers({"row": {"scopes": ["systems", "api_keys", "public"]}})[0])
	stored := keyauthz.decision with input as x with data.keyauthz.routes.index as route_index
	stored == keyauthz.decision with input as x
}

# The table is covered: every row gives at least one request.
test_agreement_covers_every_row if {
	count({q.row | some q in agreement_requests}) == count(data.keyauthz.routes.table)
}

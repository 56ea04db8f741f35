# Route matching and the route index (package keyauthz.routing) on a tiny custom table given
# with `with data.keyauthz.routes.table as ...`: literal against parameter segments, "*"
# methods, "/*" prefixes, and the index used when present and computed when absent.
#
# A table with two routes of the same method and pattern makes built_index fail with an eval
# conflict error ("object keys must be unique"), which a Rego test cannot assert; rego_test.go
# checks it from Go (TestBuiltIndexRejectsDuplicateRoutes).
package keyauthz.routing_test

import data.keyauthz
import data.keyauthz.routing

tiny_table := [
	{"id": "a-param", "methods": ["GET"], "path": "/a/:id", "scopes": ["a"], "access": "read", "gate": "none"},
	{"id": "a-literal", "methods": ["GET"], "path": "/a/b", "scopes": ["a"], "access": "read", "gate": "none"},
	{"id": "a-any", "methods": ["*"], "path": "/a/c", "scopes": ["a"], "access": "write", "gate": "none"},
	{"id": "m-param", "methods": ["get"], "path": "/m/:name", "scopes": ["m"], "access": "read", "gate": "none"},
	{"id": "m-literal-any", "methods": ["*"], "path": "/m/lit", "scopes": ["m"], "access": "write", "gate": "none"},
	{"id": "p-right", "methods": ["GET"], "path": "/p/:x/z", "gate": "none", "authenticated": true},
	{"id": "p-left", "methods": ["GET"], "path": "/p/y/:z", "gate": "none", "authenticated": true},
	{"id": "s-get", "methods": ["GET"], "path": "/s/*", "scopes": ["s"], "access": "read", "gate": "none"},
	{"id": "s-any", "methods": ["*"], "path": "/s/*", "scopes": ["s"], "access": "write", "gate": "none"},
	{"id": "s-x", "methods": ["GET"], "path": "/s/x/*", "scopes": ["s"], "access": "read", "gate": "support"},
	{"id": "s-x-y", "methods": ["GET"], "path": "/s/x/y", "scopes": ["s"], "access": "read", "gate": "admin"},
	{"id": "root", "methods": ["GET"], "path": "/", "gate": "none", "anonymous": true},
	{"id": "u-mixed", "methods": ["GET"], "path": "/U/Mixed/:ID", "gate": "none", "authenticated": true},
	{"id": "h-head", "methods": ["HEAD", "options"], "path": "/h", "gate": "none", "anonymous": true},
]

tiny_index := i if {
	i := routing.built_index with data.keyauthz.routes.table as tiny_table
}

# Each row: the request, and the id and bound parameters of the route it must match ("" for
# none).
match_cases := [
	{"note": "literal before parameter", "req": "GET /a/b", "id": "a-literal", "bound": {}},
	{"note": "parameter", "req": "GET /a/q", "id": "a-param", "bound": {"id": "q"}},
	{"note": "* matches GET", "req": "GET /a/c", "id": "a-any", "bound": {}},
	{"note": "* matches DELETE", "req": "DELETE /a/c", "id": "a-any", "bound": {}},
	{"note": "a method the row does not name", "req": "POST /a/b", "id": ""},
	{"note": "a lower-case request method is no method of the table", "req": "get /a/b", "id": ""},
	{"note": "lowercase table method", "req": "GET /m/other", "id": "m-param", "bound": {"name": "other"}},
	{"note": "a * literal before a GET parameter", "req": "GET /m/lit", "id": "m-literal-any", "bound": {}},
	{"note": "leftmost literal first", "req": "GET /p/y/z", "id": "p-left", "bound": {"z": "z"}},
	{"note": "right literal when the left one differs", "req": "GET /p/q/z", "id": "p-right", "bound": {"x": "q"}},
	{"note": "too short", "req": "GET /a", "id": ""},
	{"note": "too long", "req": "GET /a/b/c", "id": ""},
	{"note": "prefix matches itself", "req": "GET /s", "id": "s-get", "bound": {}},
	{"note": "prefix matches below it", "req": "GET /s/q/r/t", "id": "s-get", "bound": {}},
	{"note": "longer prefix first", "req": "GET /s/x/q", "id": "s-x", "bound": {}},
	{"note": "exact before prefix", "req": "GET /s/x/y", "id": "s-x-y", "bound": {}},
	{"note": "below the exact route is the prefix again", "req": "GET /s/x/y/z", "id": "s-x", "bound": {}},
	{"note": "* prefix for another method", "req": "PUT /s/x/y", "id": "s-any", "bound": {}},
	{"note": "prefix is segment-wise", "req": "GET /sx", "id": ""},
	{"note": "the root path", "req": "GET /", "id": "root", "bound": {}},
	{"note": "HEAD is looked up as GET", "req": "HEAD /a/b", "id": "a-literal", "bound": {}},
	{"note": "OPTIONS is looked up as GET", "req": "OPTIONS /a/q", "id": "a-param", "bound": {"id": "q"}},
	{"note": "HEAD reaches a * route as GET does", "req": "HEAD /m/lit", "id": "m-literal-any", "bound": {}},
	{"note": "HEAD of a prefix is the GET prefix", "req": "HEAD /s/q", "id": "s-get", "bound": {}},
	{"note": "a row's HEAD is not used", "req": "HEAD /h", "id": ""},
	{"note": "upper-case literal", "req": "GET /A/B", "id": "a-literal", "bound": {}},
	{"note": "mixed-case literal", "req": "GET /a/B", "id": "a-literal", "bound": {}},
	{"note": "parameter keeps its case", "req": "GET /A/Xy-Z", "id": "a-param", "bound": {"id": "Xy-Z"}},
	{"note": "upper-case literal before a parameter", "req": "GET /P/Y/Z", "id": "p-left", "bound": {"z": "Z"}},
	{"note": "upper-case prefix", "req": "GET /S/X/Q", "id": "s-x", "bound": {}},
	{"note": "upper-case * prefix for another method", "req": "PUT /S/x/Y", "id": "s-any", "bound": {}},
	{"note": "a table literal in upper case matches any case", "req": "GET /u/MIXED/Id-1", "id": "u-mixed", "bound": {"ID": "Id-1"}},
	{"note": "case-insensitive segments stay segment-wise", "req": "GET /SX", "id": ""},
]

_match(c, index) := {"id": r.id, "bound": routing.params(r, path)} if {
	[method, path] := split(c.req, " ")
	r := routing.match(method, path) with data.keyauthz.routes.table as tiny_table with data.keyauthz.routes.index as index
} else := {"id": ""}

_want(c) := object.filter(c, {"id", "bound"})

# test_match_built_index matches with the index keyauthz stores at load time.
test_match_built_index[c.note] if {
	some c in match_cases
	_match(c, tiny_index) == _want(c)
}

# test_match_computed_index matches with no stored index: the policy builds it from the table,
# here once per row, so only a few rows (literal, parameter, "*", prefixes).
test_match_computed_index[c.note] if {
	some i in [0, 1, 7, 14, 15, 20, 25, 27, 32]
	c := match_cases[i]
	_computed(c) == _want(c)
}

_computed(c) := {"id": r.id, "bound": routing.params(r, path)} if {
	[method, path] := split(c.req, " ")
	r := routing.match(method, path) with data.keyauthz.routes.table as tiny_table
} else := {"id": ""}

# The index has one entry for GET, one per other method named in the table, and "*" for every
# other method; each holds the "*" routes too, unless the method names the same pattern itself,
# and its catch-all ("default") with the access of its method.
test_built_index_shape if {
	tiny_index.GET.exact["a/b"].id == "a-literal"
	tiny_index.GET.exact["a/:"].id == "a-param"
	tiny_index.GET.exact["a/c"].id == "a-any"
	tiny_index["*"].exact["a/c"].id == "a-any"
	not tiny_index["*"].exact["a/b"]
	tiny_index.GET.masks[2] == ["%[1]s/:"]
	tiny_index.GET.masks[0] == []
	tiny_index.GET.default.grants == {"public": true, "public.read": true}
	tiny_index["*"].default.grants == {"public": true, "public.write": true}
	tiny_index.GET.prefix.s.id == "s-get"
	tiny_index["*"].prefix.s.id == "s-any"
	tiny_index.GET.prefix_lengths == [2, 1]
	tiny_index["*"].prefix_lengths == [1]
	tiny_index.GET.exact["u/mixed/:"].id == "u-mixed"
	not tiny_index.GET.exact["U/Mixed/:"]
	not tiny_index.HEAD
	not tiny_index.OPTIONS
	not tiny_index["*"].exact.h
}

# A stored index wins over the table: this is what lets keyauthz build it once per load.
test_stored_index_is_used if {
	r := routing.match("GET", "/a/b") with data.keyauthz.routes.index as tiny_index
	r.id == "a-literal"
}

# The whole decision runs on a custom table.
decision_cases := [
	{"note": "scoped literal route", "req": "GET /a/b", "scopes": ["a.read"], "perm": "user", "want": 200},
	{"note": "scoped * route is write", "req": "POST /a/c", "scopes": ["a.read"], "perm": "user", "want": 403},
	{"note": "prefix route gate", "req": "GET /s/x/q", "scopes": ["s"], "perm": "user", "want": 403},
	{"note": "prefix route gate met", "req": "GET /s/x/q", "scopes": ["s"], "perm": "support", "want": 200},
	{"note": "unlisted route is public", "req": "GET /zzz", "scopes": ["a"], "perm": "admin", "want": 403},
]

test_custom_table_decision[c.note] if {
	some c in decision_cases
	d := keyauthz.decision with input as _input(c) with data.keyauthz.routes.table as tiny_table
	d.status == c.want
}

_input(c) := {
	"request": {"method": method, "path": path, "host": "acme.example.com", "protocol": "http", "query": {}},
	"domain": {"id": "authority-acme", "name": "Acme", "domain": "acme.example.com"},
	"key": {"id": "k", "authority_id": "authority-acme", "scopes": c.scopes, "permissions": c.perm, "source": "header"},
	"user": {"id": "user-1", "authority_id": "authority-acme", "name": "U", "email": "u@acme.example.com", "sys_admin": c.perm == "admin", "support": c.perm == "support", "groups": []},
} if {
	[method, path] := split(c.req, " ")
}

# Every row of the shipped table is well formed: methods keyauthz judges (not HEAD or OPTIONS,
# which are looked up as GET, so a row naming them would never be used), a path, a known gate,
# scoped rows with an access, admin_or_self with its self_param, and no row both anonymous and
# scoped.
test_route_table_rows[concat(" ", [concat("|", r.methods), r.path])] if {
	some r in data.keyauthz.routes.table
	count(r.methods) > 0
	every m in r.methods {
		upper(m) in {"GET", "POST", "PUT", "PATCH", "DELETE", "*"}
	}
	startswith(r.path, "/")
	r.gate in {"none", "support", "admin", "admin_or_self"}
	_row_shape_ok(r)
}

_row_shape_ok(r) if {
	not r.scopes
	_flag_count(r) == 1
}

_row_shape_ok(r) if {
	count(r.scopes) > 0
	r.access in {"read", "write"}
	_flag_count(r) == 0
	r.gate != "admin_or_self"
}

_row_shape_ok(r) if {
	count(r.scopes) > 0
	r.access in {"read", "write"}
	r.gate == "admin_or_self"
	startswith(r.path, "/")
	contains(r.path, concat("", ["/:", r.self_param]))
}

_flag_count(r) := count([f | some f in ["anonymous", "authenticated"]; r[f] == true])

# match_exact_case is the route a case-sensitive backend runs: a segment in another case than
# the table's literal can only be a parameter.
exact_case_cases := [
	{"note": "lower-case literal", "req": "GET /a/b", "id": "a-literal", "bound": {}},
	{"note": "upper-case last segment is the parameter", "req": "GET /a/B", "id": "a-param", "bound": {"id": "B"}},
	{"note": "upper-case first segment matches nothing", "req": "GET /A/b", "id": ""},
	{"note": "HEAD as GET", "req": "HEAD /a/B", "id": "a-param", "bound": {"id": "B"}},
]

test_match_exact_case[c.note] if {
	some c in exact_case_cases
	_exact_case(c) == _want(c)
}

_exact_case(c) := {"id": r.id, "bound": routing.params(r, path)} if {
	[method, path] := split(c.req, " ")
	r := routing.match_exact_case(method, path) with data.keyauthz.routes.table as tiny_table with data.keyauthz.routes.index as tiny_index
} else := {"id": ""}

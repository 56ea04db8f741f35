# METADATA
# title: keyauthz route matching
# description: |
#   Finds the route of the route table (data.keyauthz.routes.table) that a request hits, by a
#   handful of object lookups in an index built from the table, never by scanning the table.
#   Pattern segments starting with ":" are parameters; a pattern ending in "/*" matches its
#   prefix and anything below it. The most specific route wins: literal segments before
#   parameters (leftmost first), an exact pattern before a "/*" prefix, the longer prefix first,
#   and, only between two routes of the same pattern, a route naming the method before a "*"
#   route (so a "*" route's literal segment still beats a parameter of a route naming the
#   method).
#
#   Matching judges what a backend will run
#   (docs/policy-contract.md#judging-what-the-backend-will-run): HEAD and OPTIONS are looked up
#   as GET (a backend routes them to the GET handler), and literal segments match in any case
#   (a backend may ignore case), while parameters keep the request's own spelling.
package keyauthz.routing

# The index keyauthz builds from the table once, when a policy is loaded or a bundle built, and
# stores at data.keyauthz.routes.index. Without it (a plain `opa test` or `opa build` of the
# policies/ folder) the same index is computed from the table on each evaluation: the same
# answers, only slower.
index := data.keyauthz.routes.index if {
	data.keyauthz.routes.index
} else := built_index

# built_index is the route index, computed from the table. For each method named in the table,
# and for "*" (every other method), it holds the routes that method can reach, "*" routes
# included (a route naming the method wins over a "*" route of the same pattern):
#   exact[key]      the route whose pattern, with each parameter written ":", is key
#   masks[n]        for the n-segment patterns, the JSON patches that turn a request's segments
#                   into a key, most specific first (literal segments before parameters,
#                   leftmost first)
#   prefix[key]     the "/*" route whose literal prefix is key
#   prefix_lengths  the segment counts of those prefixes, longest first
# Keys are lower-case (match looks up the lower-cased path); a row's HEAD or OPTIONS is left
# out, since those requests are looked up as GET.
# Each route carries "params" ({name: segment index}), "literals" ([[segment index, the literal
# as the table spells it], ...]; pairs, since a JSON copy of the index would turn number keys
# into strings) and "grants" ({access: the scope strings that grant that access on the route,
# public included}), so that a decision does no string work on the table. Two routes with the
# same method and pattern make this rule fail, so such a table cannot load.
built_index := {m: _method_index(m) | some m in _methods}

_methods := {upper(m) | some r in data.keyauthz.routes.table; some m in r.methods; not as_get[upper(m)]} | {"*"}

_method_index(m) := {
	"exact": {e.key: e.route | some e in entries; e.kind == "exact"},
	"masks": {n: [_patch(mask) | some mask in sort({e.mask | some e in exact; e.n == n})] |
		some n in {e.n | some e in exact}
	},
	"prefix": {e.key: e.route | some e in entries; e.kind == "prefix"},
	"prefix_lengths": array.reverse(sort({to_number(e.n) | some e in entries; e.kind == "prefix"})),
} if {
	own := {e | some e in _entries; e.method == m}
	entries := own | {e |
		some e in _entries
		e.method == "*"
		not _defines(own, e)
	}
	exact := {e | some e in entries; e.kind == "exact"}
}

_defines(entries, e) if {
	some o in entries
	o.kind == e.kind
	o.key == e.key
}

_entries contains entry if {
	some r in data.keyauthz.routes.table
	kind := _kind(r.path)
	segs := segments(trim_suffix(r.path, "/*"))
	some m in r.methods
	not as_get[upper(m)]
	entry := {
		"method": upper(m),
		"kind": kind,
		"n": format_int(count(segs), 10),
		"mask": concat("", [_mask_bit(s) | some s in segs]),
		"key": concat("/", [_key_part(s) | some s in segs]),
		"route": object.union(r, {
			"params": {trim_prefix(s, ":"): i | some i, s in segs; startswith(s, ":")},
			"literals": [[i, s] | some i, s in segs; not startswith(s, ":")],
			"grants": {a: _grants(r, a) | some a in ["read", "write"]},
		}),
	}
}

_kind(path) := "prefix" if endswith(path, "/*")

_kind(path) := "exact" if not endswith(path, "/*")

_grants(r, access) := [g |
	some s in array.concat(object.get(r, "scopes", []), ["public"])
	some g in [s, concat(".", [s, access])]
]

_patch(mask) := [{"op": "replace", "path": sprintf("/%d", [i]), "value": ":"} |
	some i in numbers.range(0, count(mask) - 1)
	substring(mask, i, 1) == "1"
]

_mask_bit(s) := "1" if startswith(s, ":")

_mask_bit(s) := "0" if not startswith(s, ":")

_key_part(s) := ":" if startswith(s, ":")

_key_part(s) := lower(s) if not startswith(s, ":")

# segments splits a path into its non-empty segments: "/" has none. A normalised path (the
# policy's input) is split directly; anything else has its empty segments dropped.
segments("/") := []

segments(path) := split(substring(path, 1, -1), "/") if {
	path != "/"
	startswith(path, "/")
	not contains(path, "//")
	not endswith(path, "/")
} else := [s | some s in split(path, "/"); s != ""]

# as_get maps the methods that are looked up as GET to it: a backend answers HEAD with its GET
# handler, and a CORS preflight (OPTIONS) with the GET route's, so they get the GET route's
# scopes, access and gate rather than the looser route of a method the table does not name.
as_get := {"HEAD": "GET", "OPTIONS": "GET"}

# match is the most specific route for method (exactly as received; the decision has refused
# any method it does not know) and path (a normalised path), undefined when no route matches.
# Literal segments match in any case: the path is lower-cased once and looked up among the
# index's lower-case keys. Its "params" name the segment index of each parameter (see params).
match(method, path) := _match(
	object.get(index, object.get(as_get, method, method), index["*"]),
	segments(lower(path)),
)

_match(t, segs) := r if {
	found := [r |
		some patch in object.get(t.masks, format_int(count(segs), 10), [])
		r := t.exact[concat("/", json.patch(segs, patch))]
	]
	r := found[0]
} else := r if {
	found := [r |
		some n in t.prefix_lengths
		n <= count(segs)
		r := t.prefix[concat("/", array.slice(segs, 0, n))]
	]
	r := found[0]
}

# match_exact_case is the route a backend that matches case-sensitively would run for method
# and path: the path's segments looked up as sent, so a segment in another case than the
# table's (lower-case) literal can only match a parameter. Undefined when no route matches.
match_exact_case(method, path) := _match(
	object.get(index, object.get(as_get, method, method), index["*"]),
	segments(path),
)

# params binds the parameters of route to the segments of path: {name: value}, in the path's
# own case (ids are case-sensitive: the guest and self checks compare them as sent).
params(route, path) := {name: segs[i] | some name, i in route.params} if segs := segments(path)

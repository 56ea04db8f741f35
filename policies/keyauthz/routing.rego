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
# Each route carries "params" ({name: segment index}) and "grants" ({access: the scope strings
# that grant that access on the route, public included}), so that a decision does no string
# work on the table. Two routes with the same method and pattern make this rule fail, so such a
# table cannot load.
built_index := {m: _method_index(m) | some m in _methods}

_methods := {upper(m) | some r in data.keyauthz.routes.table; some m in r.methods} | {"*"}

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
	entry := {
		"method": upper(m),
		"kind": kind,
		"n": format_int(count(segs), 10),
		"mask": concat("", [_mask_bit(s) | some s in segs]),
		"key": concat("/", [_key_part(s) | some s in segs]),
		"route": object.union(r, {
			"params": {trim_prefix(s, ":"): i | some i, s in segs; startswith(s, ":")},
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

_key_part(s) := s if not startswith(s, ":")

# segments splits a path into its non-empty segments: "/" has none. A normalised path (the
# policy's input) is split directly; anything else has its empty segments dropped.
segments("/") := []

segments(path) := split(substring(path, 1, -1), "/") if {
	path != "/"
	startswith(path, "/")
	not contains(path, "//")
	not endswith(path, "/")
} else := [s | some s in split(path, "/"); s != ""]

# match is the most specific route for method and path (a normalised path), undefined when no
# route matches. Its "params" name the segment index of each parameter (see params).
match(method, path) := _match(object.get(index, upper(method), index["*"]), segments(path))

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

# params binds the parameters of route to the segments of path: {name: value}.
params(route, path) := {name: segs[i] | some name, i in route.params} if segs := segments(path)

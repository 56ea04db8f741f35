# METADATA
# title: keyauthz route matching
# description: |
#   Finds the route of the route table (data.keyauthz.routes.table) that a request hits, by a
#   handful of object lookups in an index built from the table, never by scanning the table.
#   Pattern segments starting with ":" are parameters; a pattern ending in "/*" matches its
#   prefix and anything below it. The most specific route wins: literal segments before
#   parameters (leftmost first), an exact pattern before a "/*" prefix, the longer prefix first,
#   and a route naming the method before a "*" route.
package keyauthz.routing

# The index keyauthz builds from the table once, when a policy is loaded or a bundle built, and
# stores at data.keyauthz.routes.index. Without it (a plain `opa test` or `opa build` of the
# policies/ folder) the same index is computed from the table on each evaluation: the same
# answers, only slower.
index := data.keyauthz.routes.index

index := built_index if not data.keyauthz.routes.index

# built_index is the route index, computed from the table:
#   exact[method][key]     the route whose pattern, with each parameter written ":", is key
#   masks[method][n]       the parameter masks ("0" literal, "1" parameter, one per segment) of
#                          the n-segment patterns, sorted so that literals come first
#   prefix[method][key]    the "/*" route whose literal prefix is key
#   prefix_lengths[method] the segment counts of those prefixes, longest first
# Two routes with the same method and pattern make this rule fail, so such a table cannot load.
built_index := {
	"exact": {m: {e.key: e.route | some e in _exact; e.method == m} | some m in _methods},
	"masks": {m: {n: sort({e.mask | some e in _exact; e.method == m; e.n == n}) |
		some e2 in _exact
		e2.method == m
		n := e2.n
	} |
		some m in _methods
	},
	"prefix": {m: {e.key: e.route | some e in _prefix; e.method == m} | some m in _methods},
	"prefix_lengths": {m: array.reverse(sort({e.n | some e in _prefix; e.method == m})) | some m in _methods},
}

_methods contains upper(m) if {
	some r in data.keyauthz.routes.table
	some m in r.methods
}

_exact contains entry if {
	some r in data.keyauthz.routes.table
	not endswith(r.path, "/*")
	segs := segments(r.path)
	some m in r.methods
	entry := {
		"method": upper(m),
		"n": format_int(count(segs), 10),
		"mask": concat("", [_mask_bit(s) | some s in segs]),
		"key": concat("/", [_key_part(s) | some s in segs]),
		"route": object.union(r, {"params": {trim_prefix(s, ":"): i | some i, s in segs; startswith(s, ":")}}),
	}
}

_prefix contains entry if {
	some r in data.keyauthz.routes.table
	endswith(r.path, "/*")
	segs := segments(trim_suffix(r.path, "/*"))
	some m in r.methods
	entry := {
		"method": upper(m),
		"n": count(segs),
		"key": concat("/", segs),
		"route": object.union(r, {"params": {}}),
	}
}

_mask_bit(s) := "1" if startswith(s, ":")

_mask_bit(s) := "0" if not startswith(s, ":")

_key_part(s) := ":" if startswith(s, ":")

_key_part(s) := s if not startswith(s, ":")

# segments splits a path into its non-empty segments: "/" has none.
segments(path) := [s | some s in split(path, "/"); s != ""]

# match is the most specific route for method and path (a normalised path), with its
# parameters bound in "bound" ({name: value}); undefined when no route matches.
match(method, path) := route if {
	segs := segments(path)
	methods := [upper(method), "*"]
	candidates := array.concat(_exact_candidates(methods, segs), _prefix_candidates(methods, segs))
	count(candidates) > 0
	found := candidates[0]
	route := object.union(found, {"bound": {name: segs[i] | some name, i in found.params}})
}

_exact_candidates(methods, segs) := [r |
	some m in methods
	some mask in object.get(index.masks, [m, format_int(count(segs), 10)], [])
	key := concat("/", [_masked(s, substring(mask, i, 1)) | some i, s in segs])
	r := index.exact[m][key]
]

_prefix_candidates(methods, segs) := [r |
	some m in methods
	some n in object.get(index.prefix_lengths, [m], [])
	n <= count(segs)
	r := index.prefix[m][concat("/", array.slice(segs, 0, n))]
]

_masked(_, "1") := ":"

_masked(s, "0") := s

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

import data.keyauthz.facts

# The index keyauthz builds from the table once, when a policy is loaded or a bundle built, and
# stores at data.keyauthz.routes.index. Without it (a plain `opa test` or `opa build` of the
# policies/ folder) the same index is computed from the table on each evaluation: the same
# answers, only slower.
index := i if {
	i := data.keyauthz.routes.index
} else := built_index

# built_index is the route index, computed from the table. For "GET", for each other method
# named in the table, and for "*" (every other method), it holds the routes that method can
# reach, "*" routes included (a route naming the method wins over a "*" route of the same
# pattern):
#   exact[key]      the route whose pattern, with each parameter written ":", is key
#   masks[n]        for the n-segment patterns with a parameter (an array: masks[n] is [] when
#                   there are none), the sprintf formats that turn a request's segments into a
#                   key, most specific first (literal segments before parameters, leftmost
#                   first): "%[1]s/:" keeps the first segment and writes ":" for the second. A
#                   pattern of literals only needs no format: its key is the request's segments
#                   joined, which lookup tries first
#   prefix[key]     the "/*" route whose literal prefix is key
#   prefix_lengths  the segment counts of those prefixes, longest first
#   default         the catch-all (facts.unlisted): the route of a request no route matches
# and "methods" maps each method keyauthz judges (judged) to the key of its entry: HEAD and
# OPTIONS to "GET" (as_get), a method the table names to itself, the others to "*". A method
# it does not hold has no route at all, so looking a request's method up in it is the method
# allow-list.
# Keys are lower-case (match looks up the lower-cased path); a row's HEAD or OPTIONS is left
# out, since those requests are looked up as GET.
# Each route is the table's row with "params" ({name: segment index}), "literals" ([[segment
# index, the literal as the table spells it], ...]; pairs, since a JSON copy of the index would
# turn number keys into strings), "identity" (its methods and path, which tell routes apart in
# the ambiguity checks; "" for the catch-all) and its facts for that method
# (facts.route_facts: access, gate, grants, gate_min, out and messages), so that a decision
# does no string work on the table and computes nothing a route alone determines. Two routes
# with the same method and pattern make this rule fail, so such a table cannot load.
built_index := object.union({m: _method_index(m) | some m in _methods}, {"methods": {m: _index_key(m) | some m in judged}})

# judged are the HTTP methods keyauthz judges, spelled exactly so: the method arrives as the
# client sent it, and a backend may route a method we do not know (a WebDAV verb, a lower-case
# "get") to a handler we would not have judged. Any other method has no entry in the index's
# "methods", hence no route, and is refused before any route is looked up.
judged := {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

_index_key(m) := k if k := as_get[m]

else := m if m in _methods

else := "*"

_methods := {upper(m) | some r in data.keyauthz.routes.table; some m in r.methods; not as_get[upper(m)]} | {"GET", "*"}

_method_index(m) := {
	"exact": {e.key: facts.route_facts(e.route, m) | some e in entries; e.kind == "exact"},
	"masks": [[_format(mask) | some mask in sort({e.mask | some e in exact; e.n == format_int(n, 10); contains(e.mask, "1")})] |
		some n in numbers.range(0, max({to_number(e.n) | some e in exact} | {0}))
	],
	"prefix": {e.key: facts.route_facts(e.route, m) | some e in entries; e.kind == "prefix"},
	"prefix_lengths": array.reverse(sort({to_number(e.n) | some e in entries; e.kind == "prefix"})),
	"default": facts.route_facts(object.union(facts.unlisted, {"identity": ""}), m),
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
			"identity": concat(" ", [concat(",", r.methods), r.path]),
		}),
	}
}

_kind(path) := "prefix" if endswith(path, "/*")

_kind(path) := "exact" if not endswith(path, "/*")

# _format is the sprintf format of mask (one character per segment, "1" for a parameter): each
# literal segment's position as an explicit argument, ":" for each parameter. A format without
# any literal starts with "%.0[1]s" (the first segment, printed empty), so that sprintf does not
# complain of unused arguments; the empty pattern ("/") has the empty format.
_format(mask) := concat("", [prefix, concat("/", parts)]) if {
	mask != ""
	parts := [_format_part(substring(mask, i, 1), i) | some i in numbers.range(0, count(mask) - 1)]
	prefix := _format_prefix(mask)
}

_format("") := ""

_format_part("0", i) := sprintf("%%[%d]s", [i + 1])

_format_part("1", _) := ":"

_format_prefix(mask) := "%.0[1]s" if not contains(mask, "0")

else := ""

_mask_bit(s) := "1" if startswith(s, ":")

_mask_bit(s) := "0" if not startswith(s, ":")

_key_part(s) := ":" if startswith(s, ":")

_key_part(s) := lower(s) if not startswith(s, ":")

# segments splits a path into its non-empty segments: "/" has none. A normalised path (the
# policy's input) is split directly; anything else has its empty segments dropped.
segments(path) := split(substring(path, 1, -1), "/") if {
	regex.match(`^(/[^/]+)+$`, path)
} else := [s | some s in split(path, "/"); s != ""]

# as_get maps the methods that are looked up as GET to it: a backend answers HEAD with its GET
# handler, and a CORS preflight (OPTIONS) with the GET route's, so they get the GET route's
# scopes, access and gate rather than the looser route of a method the table does not name.
as_get := {"HEAD": "GET", "OPTIONS": "GET"}

# route is the route of the request of policy input x, for its method (exactly as received) and
# path (a normalised path): the most specific route of the table, or the catch-all (which alone
# has "default") when none matches, with its facts for the method (facts.route_facts); for a
# method keyauthz does not judge (judged), which has no entry in the index, or an input without
# a method or path, {"unjudged": true} and an empty decision route. Literal segments match in any
# case: the path is lower-cased once and looked up among the index's lower-case keys. The
# decision calls it once (data.keyauthz.decision).
route(x) := r if {
	r := lookup(x.request.method, segments(lower(x.request.path)))
} else := {"out": {"resource": "", "access": "", "gate": ""}, "params": {}, "unjudged": true}

# match is the most specific route for method (exactly as received) and path (a normalised
# path), undefined when no route matches or keyauthz does not judge the method. Its "params"
# name the segment index of each parameter (see params).
match(method, path) := r if {
	r := lookup(method, segments(lower(path)))
	not r.default
}

# lookup is the most specific route for method (exactly as received) and the path segments segs
# in the method's entry of the index, or its catch-all (which alone has "default") when none
# matches: the pattern of literals only whose key is segs joined, then the route of each mask of
# the segment count, most specific first, then of each "/*" prefix, longest first. Undefined for
# a method keyauthz does not judge (judged): the index holds no entry for it.
lookup(method, segs) := _lookup(index[index.methods[method]], segs)

_lookup(t, segs) := r if {
	r := t.exact[concat("/", segs)]
} else := r if {
	found := [r |
		some f in t.masks[count(segs)]
		r := t.exact[sprintf(f, segs)]
	]
	r := found[0]
} else := r if {
	found := [r |
		some n in t.prefix_lengths
		n <= count(segs)
		r := t.prefix[concat("/", array.slice(segs, 0, n))]
	]
	r := found[0]
} else := t.default

# match_exact_case is the route a backend that matches case-sensitively would run for method
# and path: the path's segments looked up as sent, so a segment in another case than the
# table's (lower-case) literal can only match a parameter. Undefined when no route matches.
match_exact_case(method, path) := r if {
	r := lookup(method, segments(path))
	not r.default
}

# params binds the parameters of route to the segments of path: {name: value}, in the path's
# own case (ids are case-sensitive: the guest and self checks compare them as sent).
params(route, path) := {name: segs[i] | some name, i in route.params} if segs := segments(path)

# METADATA
# title: keyauthz decision
# description: |
#   The authorization decision for one request, after Go has authenticated the key (input.key
#   and input.user are present only for a valid, unexpired key). See policies/README.md for the
#   input and output, and docs/policy-contract.md#rule-order for the rules.
# entrypoint: true
package keyauthz

import data.keyauthz.routing

# decision is the answer keyauthz and a standalone OPA give for input. The default makes it
# defined whatever happens below: an undefined decision would be a deny anyway, but an explicit
# one is easier to read in a decision log.
default decision := {
	"allow": false,
	"status": 403,
	"message": "access denied",
	"route": {"resource": "", "access": "", "gate": ""},
	"permissions": "user",
}

decision := {
	"allow": o.status == 200,
	"status": o.status,
	"message": o.message,
	"route": r.out,
	"permissions": ["user", "support", "admin", "admin_support"][level],
} if {
	r := route
	o := outcome(r)
}

# route is the matched route of the table or, when none matches, the catch-all (facts.unlisted),
# as the route index holds them: each with its facts (facts.route_facts) already computed for the
# request's method. A method keyauthz does not judge (routing.judged: the index holds no entry
# for it) has no route at all: its decision names none, and it is refused before anything else.
route := r if {
	r := routing.lookup(input.request.method, routing.segments(lower(input.request.path)))
} else := {"out": {"resource": "", "access": "", "gate": ""}, "params": {}, "unjudged": true}

# bound holds the route's parameters, bound to the request's path segments.
bound := routing.params(route, input.request.path)

# level is the caller's permission level, 0 (user) to 3 (admin_support): the key's level
# (its permissions; anything else, or no key, counts as user), capped at its user's current
# level (sys_admin and support both: admin_support; sys_admin: admin; support: support; else
# user; a flag counts when it is present and not false), so that demoting a user narrows its
# keys at once. (One expression over inline tables: each rule a decision evaluates costs
# allocations.)
level := min([
	object.get({"user": 0, "support": 1, "admin": 2, "admin_support": 3}, object.get(input, ["key", "permissions"], ""), 0),
	{true: {true: 3, false: 2}, false: {true: 1, false: 0}}[object.get(input, ["user", "sys_admin"], false) != false][object.get(input, ["user", "support"], false) != false],
])

# outcome is the status and message for the request's route r, checked in order: the first rule
# that applies decides. (A function of the route, so that each check reads a local value rather
# than the route rule again. The last three branches are "missing scope or guest restriction:
# 403, else failed gate: 403, else allowed", written with the allow first, so that an allow
# evaluates scope_ok and gate_ok once each and negates neither.)
outcome(r) := {"status": 403, "message": "method not allowed"} if {
	r.unjudged
} else := {"status": 403, "message": "ambiguous path"} if {
	ambiguous_path
} else := {"status": 200, "message": "anonymous route"} if {
	r.anonymous
} else := {"status": 401, "message": "missing credentials"} if {
	not input.key
} else := {"status": 401, "message": "authority not found"} if {
	not input.domain
} else := {"status": 401, "message": "authority domain does not match token's"} if {
	input.key.authority_id != input.domain.id
} else := {"status": 403, "message": "cross-site request with a cookie or URL key"} if {
	ambient_cross_site
} else := {"status": 200, "message": "authenticated route"} if {
	r.authenticated
} else := {"status": 200, "message": "allowed"} if {
	scope_ok
	gate_ok
} else := {"status": 403, "message": scope_message} if {
	not scope_ok
} else := {"status": 403, "message": r.gate_message}

# ambiguous_path holds for a path a backend may read as another route than the table does:
#
# By case: the path's literal segments match one route of the table only in another case, while
# a backend that matches case-sensitively reads the same path as another route of the table:
# `api_keys/INSPECT` is the authenticated inspect route to us, but the key "INSPECT"
# (admin-gated) to such a backend; `systems/sys-1/TYPES` the ungated types route, or the
# support-gated state of a module "TYPES". A path whose other-case spelling reaches no other
# route (upper-case `/API/ENGINE/V2/API_KEYS`) is judged as the table's route. Only a path whose
# literal segments differ from the route's (not one with upper-case ids) needs the second lookup.
#
# By format: the path's last segment ends in a format suffix (the last '.' followed by one or
# more characters other than '/', '.' and '?', which is what Rails' default `:format` constraint
# accepts) and the path without that suffix matches another route than the path as sent.
# Rails-style backends route every path with an optional `(.:format)`: `api_keys.json` runs the
# admin-gated `api_keys` index, while to the table it is no literal, so the catch-all (public, no
# gate); `systems/sys-1/zones.json` is the support-gated `systems/:id/:module` to the table but
# the admin-gated zones route to such a backend; and `systems/control.json` the show of a
# system, or the control websocket (write). Where both readings give the same route
# (`systems/sys-1.json`, `users/john.doe`) nothing changes. Only a path whose last segment holds
# a '.' needs the second lookup.
#
# Neither reading is safe to pick, so the request is refused. Routes are told apart by their
# table path and methods (their identity in the index; the catch-all's is ""). Each body starts
# with its cheap guard, so that a plain lower-case path without a '.' costs two string tests.
ambiguous_path if {
	input.request.path != lower(input.request.path)
	segs := routing.segments(input.request.path)
	some [i, literal] in route.literals
	segs[i] != literal
	exact := routing.match_exact_case(input.request.method, input.request.path)
	exact.identity != route.identity
}

ambiguous_path if {
	contains(input.request.path, ".")
	dots := indexof_n(input.request.path, ".")
	i := dots[count(dots) - 1]
	regex.match(`^[^/.?]+$`, substring(input.request.path, i + 1, -1))
	routing.lookup(input.request.method, routing.segments(lower(substring(input.request.path, 0, i)))).identity != route.identity
}

# ambient_cross_site holds for a write (or a websocket, which PlaceOS uses to execute) made
# cross-site with a key the browser adds by itself: a cookie or a URL parameter another site's
# page can carry. Only a header key proves that the caller's own code sent the request, so any
# other source counts as ambient. cross_site comes from Sec-Fetch-Site and Origin; clients that
# send neither (servers, scripts) are never cross-site. Reads stay open: a cross-site page
# cannot read the answer.
ambient_cross_site if {
	input.request.cross_site == true
	not input.key.source == "header"
	_ambient_sensitive
}

_ambient_sensitive if route.access == "write"

_ambient_sensitive if input.request.protocol == "websocket"

# A key may use a route when one of its scopes grants the route's access on one of the route's
# scopes or public (route.grants, see facts.route_facts), or when it is a guest key and the route lets
# guests in on its terms.
scope_ok if {
	some s in input.key.scopes
	route.grants[s]
}

# Keys keyauthz stores have lower-case suffixes, so the rule above decides almost always; this
# one serves keys written by hand with suffixes in another case (the suffix is case-insensitive,
# the resource is not).
scope_ok if {
	some s in input.key.scopes
	s != lower(s)
	route.grants[_lower_suffix(s)]
}

_lower_suffix(s) := concat(".", [resource, lower(suffix)]) if {
	[resource, suffix] := split(s, ".")
} else := s

scope_ok if guest_ok

guest_ok if {
	"guest" in input.key.scopes
	route.guest.role_param
	bound[route.guest.role_param] in object.get(input, ["user", "groups"], [])
}

# Every value of the guest query parameter must qualify, not just one: a server reading the
# first of several `channel` values must not be handed a channel the guest may not use.
guest_ok if {
	"guest" in input.key.scopes
	values := object.get(input.request, ["query", route.guest.query], [])
	count(values) > 0
	every value in values {
		contains(value, route.guest.contains)
	}
}

scope_message := "guest access denied: the request is outside the guest's roles" if {
	guest_route_for_guest
} else := route.scope_message

guest_route_for_guest if {
	"guest" in input.key.scopes
	route.guest
}

gate_ok if level >= route.gate_min

gate_ok if {
	route.gate == "admin_or_self"
	bound[route.self_param] == input.user.id
}

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
	"permissions": ["user", "support", "admin", "admin_support"][lvl],
} if {
	r := routing.route(input)
	lvl := level(input)
	o := outcome(r, lvl)
}

# The rules below are functions of the request's route r (routing.route: the matched route of
# the table or, when none matches, the catch-all facts.unlisted, as the route index holds them,
# each with its facts already computed for the request's method; a method keyauthz does not
# judge has no route, only {"unjudged": true}), and of the caller's level lvl, rather than rules
# reading a `route` rule: a function reads its argument, where each reference to another rule
# costs the evaluator a lookup in its cache (docs/performance.md#the-policy).

# level is the caller's permission level in policy input x, 0 (user) to 3 (admin_support): the
# key's level (its permissions; anything else, or no key, counts as user), capped at its user's
# current level (sys_admin and support both: admin_support; sys_admin: admin; support: support;
# else user; a flag counts when it is present and not false), so that demoting a user narrows
# its keys at once.
level(x) := min([
	object.get({"user": 0, "support": 1, "admin": 2, "admin_support": 3}, object.get(x, ["key", "permissions"], ""), 0),
	{true: {true: 3, false: 2}, false: {true: 1, false: 0}}[object.get(x, ["user", "sys_admin"], false) != false][object.get(x, ["user", "support"], false) != false],
])

# outcome is the status and message for route r and level lvl, checked in the order of
# docs/policy-contract.md#rule-order: the first rule that applies decides. The three 401 rules
# (no key, no domain for the host, a key of another domain) are one branch: the key's domain is
# the host's exactly when none applies, and credential_message names the first that does. The
# last three branches are "missing scope or guest restriction: 403, else failed gate: 403, else
# allowed", written with the allow first, so that an allow evaluates scope_ok and gate_ok once
# each and negates neither. (Every branch an allow passes through costs allocations, so the
# route's flags are compared with true: a bare reference costs a generated variable.)
outcome(r, lvl) := {"status": 403, "message": "method not allowed"} if {
	r.unjudged == true
} else := {"status": 403, "message": "ambiguous path"} if {
	ambiguous_path(r)
} else := {"status": 200, "message": "anonymous route"} if {
	r.anonymous == true
} else := {"status": 401, "message": credential_message} if {
	not input.key.authority_id == input.domain.id
} else := {"status": 403, "message": "client address not allowed for this key"} if {
	client_not_allowed # limits.rego
} else := {"status": 403, "message": "cross-site request with a cookie or URL key"} if {
	ambient_cross_site(r)
} else := {"status": 200, "message": "authenticated route"} if {
	r.authenticated == true
} else := {"status": 200, "message": "allowed"} if {
	scope_ok(r)
	gate_ok(r, lvl)
} else := {"status": 403, "message": scope_message(r)} if {
	not scope_ok(r)
} else := {"status": 403, "message": r.gate_message}

# credential_message names the first credential rule a request breaks: no key, then no domain
# for the host, then a key of another domain.
credential_message := "missing credentials" if {
	not input.key
} else := "authority not found" if {
	not input.domain
} else := "authority domain does not match token's"

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
ambiguous_path(r) if {
	input.request.path != lower(input.request.path)
	segs := routing.segments(input.request.path)
	some [i, literal] in r.literals
	segs[i] != literal
	exact := routing.match_exact_case(input.request.method, input.request.path)
	exact.identity != r.identity
}

ambiguous_path(r) if {
	contains(input.request.path, ".")
	dots := indexof_n(input.request.path, ".")
	i := dots[count(dots) - 1]
	regex.match(`^[^/.?]+$`, substring(input.request.path, i + 1, -1))
	routing.lookup(input.request.method, routing.segments(lower(substring(input.request.path, 0, i)))).identity != r.identity
}

# ambient_cross_site holds for a write (or a websocket, which PlaceOS uses to execute) made
# cross-site with a key the browser adds by itself: a cookie or a URL parameter another site's
# page can carry. Only a header key proves that the caller's own code sent the request, so any
# other source counts as ambient. cross_site comes from Sec-Fetch-Site and Origin; clients that
# send neither (servers, scripts) are never cross-site. Reads stay open: a cross-site page
# cannot read the answer.
ambient_cross_site(r) if {
	input.request.cross_site == true
	not input.key.source == "header"
	_ambient_sensitive(r)
}

_ambient_sensitive(r) if r.access == "write"

_ambient_sensitive(_) if input.request.protocol == "websocket"

# A key may use a route when one of its scopes grants the route's access on one of the route's
# scopes or public (r.grants, see facts.route_facts), or when it is a guest key and the route lets
# guests in on its terms. (Defined as false otherwise, so that the evaluator keeps the answer
# and a denial asks it once: it keeps only the values of functions, not their failures.)
default scope_ok(_) := false

scope_ok(r) if {
	some s in input.key.scopes
	r.grants[s]
}

# Keys keyauthz stores have lower-case suffixes, so the rule above decides almost always; this
# one serves keys written by hand with suffixes in another case (the suffix is case-insensitive,
# the resource is not).
scope_ok(r) if {
	some s in input.key.scopes
	s != lower(s)
	r.grants[_lower_suffix(s)]
}

_lower_suffix(s) := concat(".", [resource, lower(suffix)]) if {
	[resource, suffix] := split(s, ".")
} else := s

scope_ok(r) if guest_ok(r)

guest_ok(r) if {
	"guest" in input.key.scopes
	r.guest.role_param
	routing.params(r, input.request.path)[r.guest.role_param] in object.get(input, ["user", "groups"], [])
}

# Every value of the guest query parameter must qualify, not just one: a server reading the
# first of several `channel` values must not be handed a channel the guest may not use.
guest_ok(r) if {
	"guest" in input.key.scopes
	values := object.get(input.request, ["query", r.guest.query], [])
	count(values) > 0
	every value in values {
		contains(value, r.guest.contains)
	}
}

# scope_message is the 403 message of a key whose scopes do not open route r: a guest key on a
# route that lets guests in on terms the request does not meet is told so.
scope_message(r) := "guest access denied: the request is outside the guest's roles" if {
	"guest" in input.key.scopes
	r.guest
} else := r.scope_message

# gate_ok holds when level lvl passes route r's gate, or when the route is the caller's own user
# record (admin_or_self, the route's self_param parameter bound to the user's id).
gate_ok(r, lvl) if lvl >= r.gate_min

gate_ok(r, _) if {
	r.gate == "admin_or_self"
	routing.params(r, input.request.path)[r.self_param] == input.user.id
}

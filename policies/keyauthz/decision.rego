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
	"allow": outcome.status == 200,
	"status": outcome.status,
	"message": outcome.message,
	"route": {"resource": resource, "access": access, "gate": gate},
	"permissions": level_names[level],
}

# method_allowed holds for the HTTP methods keyauthz judges, spelled exactly so: the method
# arrives as the client sent it, and a backend may route a method we do not know (a WebDAV
# verb, a lower-case "get") to a handler we would not have judged. Anything else is refused
# before any route is looked up. (An inline set: a rule holding it costs allocations on every
# decision.)
method_allowed if input.request.method in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

# route is the matched route of the table, or the catch-all: routes not in the table need the
# public scope, with access by method. A method that is not method_allowed has no route at
# all: its decision names none.
route := {"scopes": [], "access": "", "gate": "", "params": {}} if {
	not method_allowed
} else := r if {
	r := routing.match(input.request.method, input.request.path)
} else := {"scopes": ["public"], "gate": "none", "params": {}, "default": true}

# bound holds the route's parameters, bound to the request's path segments.
bound := routing.params(route, input.request.path)

resource := route.scopes[0] if count(route.scopes) > 0

else := ""

# access is declared per route; where it is not, GET, HEAD and OPTIONS read and the rest write.
access := route.access if {
	route.access
} else := "read" if {
	input.request.method in {"GET", "HEAD", "OPTIONS"}
} else := "write"

gate := object.get(route, "gate", "none")

# Permission levels: the key's level, capped at its user's current level, so that demoting a
# user narrows its keys at once.
level_names := ["user", "support", "admin", "admin_support"]

levels := {"user": 0, "support": 1, "admin": 2, "admin_support": 3}

user_level := 3 if {
	input.user.sys_admin
	input.user.support
} else := 2 if {
	input.user.sys_admin
} else := 1 if {
	input.user.support
} else := 0

key_level := l if {
	l := levels[input.key.permissions]
} else := 0

level := key_level if key_level <= user_level

else := user_level

gate_min := {"none": 0, "support": 1, "admin": 2, "admin_or_self": 2}

# outcome holds status and message, checked in order: the first rule that applies decides.
outcome := {"status": 403, "message": "method not allowed"} if {
	not method_allowed
} else := {"status": 403, "message": "ambiguous path"} if {
	case_ambiguous
} else := {"status": 403, "message": "ambiguous path"} if {
	format_ambiguous
} else := {"status": 200, "message": "anonymous route"} if {
	route.anonymous
} else := {"status": 401, "message": "missing credentials"} if {
	not input.key
} else := {"status": 401, "message": "authority not found"} if {
	not input.domain
} else := {"status": 401, "message": "authority domain does not match token's"} if {
	input.key.authority_id != input.domain.id
} else := {"status": 403, "message": "cross-site request with a cookie or URL key"} if {
	ambient_cross_site
} else := {"status": 200, "message": "authenticated route"} if {
	route.authenticated
} else := {"status": 403, "message": scope_message} if {
	not scope_ok
} else := {"status": 403, "message": gate_message} if {
	not gate_ok
} else := {"status": 200, "message": "allowed"}

# case_ambiguous holds when the path's literal segments match one route of the table only in
# another case, while a backend that matches case-sensitively reads the same path as another
# route of the table: `api_keys/INSPECT` is the authenticated inspect route to us, but the key
# "INSPECT" (admin-gated) to such a backend; `systems/sys-1/TYPES` the ungated types route,
# or the support-gated state of a module "TYPES". Neither reading is safe to pick, so the
# request is refused. A path whose other-case spelling reaches no other route (upper-case
# `/API/ENGINE/V2/API_KEYS`) is judged as the table's route. Only a path whose literal segments
# differ from the route's (not one with upper-case ids) needs the second lookup.
case_ambiguous if {
	input.request.path != lower(input.request.path)
	segs := routing.segments(input.request.path)
	some [i, literal] in route.literals
	segs[i] != literal
	exact := routing.match_exact_case(input.request.method, input.request.path)
	exact.path != route.path
}

# format_ambiguous holds when the path's last segment ends in a format suffix (the last '.'
# followed by one or more characters other than '/', '.' and '?', which is what Rails' default
# `:format` constraint accepts) and the path without that suffix matches
# another route than the path as sent. Rails-style backends route every path with an optional
# `(.:format)`: `api_keys.json` runs the admin-gated `api_keys` index, while to the table it is
# no literal, so the catch-all (public, no gate); `systems/sys-1/zones.json` is the support-gated
# `systems/:id/:module` to the table but the admin-gated zones route to such a backend; and
# `systems/control.json` the show of a system, or the control websocket (write). Neither reading
# is safe to pick, so the request is refused. Where both readings give the same route
# (`systems/sys-1.json`, `users/john.doe`) nothing changes. Routes are told apart by their table
# path and methods (the catch-all has neither); only a path whose last segment holds a '.' needs
# the second lookup.
format_ambiguous if {
	contains(input.request.path, ".")
	dots := indexof_n(input.request.path, ".")
	i := dots[count(dots) - 1]
	regex.match(`^[^/.?]+$`, substring(input.request.path, i + 1, -1))
	_route_id(_route_without_suffix(substring(input.request.path, 0, i))) != _route_id(route)
}

# _route_without_suffix is the route matched for path with the request's method (HEAD and
# OPTIONS as GET, like route), or {} for the catch-all.
_route_without_suffix(path) := r if {
	r := routing.match(input.request.method, path)
} else := {}

# _route_id tells routes apart: a table route by its path and methods, the catch-all by neither.
_route_id(r) := [object.get(r, "path", ""), object.get(r, "methods", [])]

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

_ambient_sensitive if access == "write"

_ambient_sensitive if input.request.protocol == "websocket"

# A key may use a route when its scopes grant the route's access on one of the route's scopes
# (or public), or when it is a guest key and the route lets guests in on its terms.
scope_ok if {
	some granting in _granting
	granting in input.key.scopes
}

# Keys keyauthz stores have lower-case suffixes, so the rule above decides almost always; this
# one serves keys written by hand with suffixes in another case.
scope_ok if {
	some granting in _granting
	granting in _held
}

# _held is the key's scope list as a set, suffixes lower-cased (they are case-insensitive;
# resources are not).
_held := {_lower_suffix(s) | some s in input.key.scopes}

_lower_suffix(s) := concat(".", [resource, lower(suffix)]) if {
	[resource, suffix] := split(s, ".")
} else := s

# _granting lists the scopes that grant the route's access: precomputed in the route index
# for the table's routes, public only for the rest.
_granting := route.grants[access] if {
	route.grants
} else := ["public", concat(".", ["public", access])]

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

scope_message := msg if {
	guest_route_for_guest
	msg := "guest access denied: the request is outside the guest's roles"
} else := sprintf("missing scope: %s", [concat(" or ", [sprintf("%s.%s", [s, access]) | some s in _required])])

guest_route_for_guest if {
	"guest" in input.key.scopes
	route.guest
}

# _required lists the scopes that would open the route, public last.
_required := array.concat([s | some s in route.scopes; s != "public"], ["public"])

gate_ok if level >= gate_min[gate]

gate_ok if {
	gate == "admin_or_self"
	bound[route.self_param] == input.user.id
}

gate_message := sprintf("requires %s permissions", [gate]) if gate != "admin_or_self"

else := "requires admin permissions or the user's own record"

# METADATA
# title: keyauthz route facts
# description: |
#   What a decision needs of each route of the table (and of the catch-all), worked out once per
#   route and method and stored in the route index (routing.rego), so that a decision only looks
#   facts up. Kept apart from the decision module, so that routing depends on the facts alone.
package keyauthz.facts

# gate_min is the least level each gate lets in: support ≥ 1, admin ≥ 2; admin_or_self also
# lets the caller's own record in (gate_ok).
gate_min := {"none": 0, "support": 1, "admin": 2, "admin_or_self": 2}

# unlisted is the route of a request no route of the table matches: it needs the public scope
# (its access by method, see route_facts) and has no gate.
unlisted := {"scopes": ["public"], "gate": "none", "params": {}, "default": true}

# route_facts is everything the decision needs of route r (a row of the table, or unlisted)
# when it is requested with method m (HEAD and OPTIONS are looked up as GET; "*" stands for
# every method the table does not name). The route index holds routes with their facts, so it
# is computed once per route and method when keyauthz loads a policy or builds a bundle, or by
# routing.index on each evaluation when no index is stored, and a decision only looks facts up:
#   access         the row's access; where it declares none, GET, HEAD and OPTIONS read and the
#                  rest write
#   gate           the row's gate ("none" when absent)
#   grants         the scope strings that grant access on the route, as an object of trues:
#                  each of its scopes and public, bare or with the access suffix
#   gate_min       the least level the gate lets in (gate_min; an unknown gate 4, above every
#                  level, so that it lets no level in)
#   out            the decision's route: its first scope (or ""), access and gate
#   scope_message  the 403 message of a key without a granting scope
#   gate_message   the 403 message of a level below the gate
#   anonymous, authenticated
#                  the row's flags as booleans (a flag counts when present and not false), so
#                  that a decision compares them with true
route_facts(r, m) := object.union(r, {
	"anonymous": object.get(r, "anonymous", false) != false,
	"authenticated": object.get(r, "authenticated", false) != false,
	"access": access,
	"gate": gate,
	"grants": {g: true |
		some s in array.concat(object.get(r, "scopes", []), ["public"])
		some g in [s, concat(".", [s, access])]
	},
	"gate_min": object.get(gate_min, gate, 4),
	"out": {"resource": _resource(r), "access": access, "gate": gate},
	"scope_message": sprintf("missing scope: %s", [concat(" or ", [sprintf("%s.%s", [s, access]) | some s in _required(r)])]),
	"gate_message": _gate_message(gate),
}) if {
	access := _access(r, m)
	gate := object.get(r, "gate", "none")
}

# Access is declared per route; where it is not, GET, HEAD and OPTIONS read and the rest write.
_access(r, m) := r.access if {
	r.access
} else := "read" if {
	m in {"GET", "HEAD", "OPTIONS"}
} else := "write"

_resource(r) := r.scopes[0] if count(object.get(r, "scopes", [])) > 0

else := ""

# _required lists the scopes that would open route r, public last.
_required(r) := array.concat([s | some s in object.get(r, "scopes", []); s != "public"], ["public"])

_gate_message(gate) := sprintf("requires %s permissions", [gate]) if gate != "admin_or_self"

else := "requires admin permissions or the user's own record"

# Test policy "faulty": it decides on an empty input (so it loads), and fails in a different
# way for each of a few request paths.
package keyauthz

# No default: the base decision covers every path but the faulty ones.
decision := {
	"allow": false,
	"status": 401,
	"message": "faulty: default",
	"route": {"resource": "", "access": "", "gate": ""},
	"permissions": "user",
} if not fault in faults

fault := input.request.path

faults := {
	"/allow", "/undefined", "/wrong-allow", "/wrong-status", "/odd-status", "/allow-403",
	"/wrong-route", "/wrong-message", "/no-permissions", "/not-object", "/fraction",
	"/builtin-error", "/conflict", "/slow",
}

# "/allow": a well-formed allow, to show that the policy works otherwise.
decision := {
	"allow": true,
	"status": 200,
	"message": "faulty: allowed",
	"route": {"resource": "r", "access": "read", "gate": "none"},
	"permissions": "user",
} if fault == "/allow"

# "/undefined": no rule applies, so the decision is undefined.

decision := {"allow": "yes", "status": 200, "message": "", "route": {}, "permissions": "user"} if fault == "/wrong-allow"

decision := {"allow": false, "status": "403", "message": "", "route": {}, "permissions": "user"} if fault == "/wrong-status"

decision := {"allow": false, "status": 418, "message": "", "route": {}, "permissions": "user"} if fault == "/odd-status"

decision := {"allow": true, "status": 403, "message": "", "route": {}, "permissions": "user"} if fault == "/allow-403"

decision := {"allow": false, "status": 403, "message": "", "route": "r", "permissions": "user"} if fault == "/wrong-route"

decision := {"allow": false, "status": 403, "message": 7, "route": {}, "permissions": "user"} if fault == "/wrong-message"

decision := {"allow": false, "status": 403, "message": "", "route": {}} if fault == "/no-permissions"

decision := "allow" if fault == "/not-object"

decision := {"allow": false, "status": 403.5, "message": "", "route": {}, "permissions": "user"} if fault == "/fraction"

# "/builtin-error": to_number fails, which is an error in strict builtin-error mode.
decision := {"allow": false, "status": to_number(input.request.method), "message": "", "route": {}, "permissions": "user"} if fault == "/builtin-error"

# "/conflict": two values for one complete rule, an evaluation error in any mode.
decision := {"allow": false, "status": 401, "message": "one", "route": {}, "permissions": "user"} if fault == "/conflict"

decision := {"allow": false, "status": 401, "message": "two", "route": {}, "permissions": "user"} if fault == "/conflict"

# "/slow": a loop of 10^10 steps, cut short by the engine's timeout.
decision := {"allow": true, "status": 200, "message": "slow", "route": {}, "permissions": "user"} if {
	fault == "/slow"
	some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i * j < 0
}

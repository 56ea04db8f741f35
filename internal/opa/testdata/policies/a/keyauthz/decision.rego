# Test policy A: a key with the route's resource in its scopes is allowed; a key without is
# 403; no key is 401. It reads only the materialised index, never built_index.
package keyauthz

default decision := {
	"allow": false,
	"status": 401,
	"message": "missing credentials",
	"route": {"resource": "", "access": "", "gate": ""},
	"permissions": "user",
}

route := data.keyauthz.routes.index[input.request.path]

decision := {
	"allow": true,
	"status": 200,
	"message": "a: allowed",
	"route": {"resource": route.resource, "access": route.access, "gate": route.gate},
	"permissions": input.key.permissions,
} if {
	route.resource in input.key.scopes
}

decision := {
	"allow": false,
	"status": 403,
	"message": "a: missing scope",
	"route": {"resource": route.resource, "access": route.access, "gate": route.gate},
	"permissions": input.key.permissions,
} if {
	input.key
	not route.resource in input.key.scopes
}

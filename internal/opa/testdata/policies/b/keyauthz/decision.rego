# Test policy B: like A with the answers reversed, so that a swap shows in every decision.
package keyauthz

default decision := {
	"allow": false,
	"status": 403,
	"message": "b: denied",
	"route": {"resource": "", "access": "", "gate": ""},
	"permissions": "user",
}

route := data.keyauthz.routes.index[input.request.path]

decision := {
	"allow": true,
	"status": 200,
	"message": "b: allowed",
	"route": {"resource": route.resource, "access": route.access, "gate": route.gate},
	"permissions": "admin",
} if {
	input.key
	not route.resource in input.key.scopes
}

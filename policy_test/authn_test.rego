# Credentials and domains (docs/policy-contract.md#rule-order): the anonymous health route,
# routes that need only a key, the host's domain and the key's domain, in the order the policy
# checks them.
package keyauthz_test

import data.keyauthz

authn_cases := [
	{"note": "health without a credential", "req": "GET /api/engine/v2", "want": 200, "msg": "anonymous route"},
	{"note": "health with a key", "req": "GET /api/engine/v2", "scopes": [], "want": 200},
	{"note": "health on an unknown host", "req": "GET /api/engine/v2", "host": "nowhere.example.com", "want": 200},
	{"note": "health is GET only", "req": "POST /api/engine/v2", "want": 401, "msg": "missing credentials"},
	{"note": "authenticated route without a credential", "req": "GET api_keys/inspect", "want": 401, "msg": "missing credentials"},
	{"note": "scoped route without a credential", "req": "GET systems", "want": 401, "msg": "missing credentials"},
	{"note": "staff API without a credential", "req": "GET /api/staff/v1/bookings", "want": 401, "msg": "missing credentials"},
	{"note": "unlisted route without a credential", "req": "GET webrtc/rooms", "want": 401},
	{"note": "no credential on an unknown host is missing credentials", "req": "GET systems", "host": "nowhere.example.com", "want": 401, "msg": "missing credentials"},
]

test_authn[c.note] if {
	some c in authn_cases
	ok(c)
}

domain_cases := [
	{"note": "key on an unknown host", "req": "GET systems", "scopes": ["public"], "host": "nowhere.example.com", "want": 401, "msg": "authority not found"},
	{"note": "key on an unknown host, authenticated route", "req": "GET users/current", "scopes": [], "host": "nowhere.example.com", "want": 401, "msg": "authority not found"},
	{"note": "key of another domain", "req": "GET systems", "scopes": ["public"], "keydom": "authority-other", "want": 401, "msg": "authority domain does not match token's"},
	{"note": "key of another domain, authenticated route", "req": "GET api_keys/inspect", "scopes": [], "keydom": "authority-other", "want": 401, "msg": "authority domain does not match token's"},
	{"note": "admin key of another domain", "req": "GET api_keys", "scopes": ["public"], "perm": "admin", "keydom": "authority-other", "want": 401},
	{"note": "key on its own domain's host", "req": "GET systems", "scopes": ["public"], "host": "other.example.com", "keydom": "authority-other", "want": 200},
	{"note": "key on another domain's host", "req": "GET systems", "scopes": ["public"], "host": "other.example.com", "want": 401, "msg": "authority domain does not match token's"},
	{"note": "domain is checked before scopes", "req": "GET systems", "scopes": [], "keydom": "authority-other", "want": 401},
	{"note": "inspect with no scopes", "req": "GET api_keys/inspect", "scopes": [], "want": 200, "msg": "authenticated route"},
	{"note": "current user with no scopes", "req": "GET users/current", "scopes": [], "want": 200},
	{"note": "scopes with no scopes", "req": "GET scopes", "scopes": [], "want": 200},
	{"note": "version with no scopes", "req": "GET version", "scopes": [], "want": 200},
	{"note": "key from a cookie", "req": "GET systems", "scopes": ["systems.read"], "source": "cookie", "want": 200},
	{"note": "key from the URL", "req": "GET systems", "scopes": ["systems.read"], "source": "query", "want": 200},
]

test_domains[c.note] if {
	some c in domain_cases
	ok(c)
}

# The decision is defined whatever the input, and denies when the input is not one keyauthz
# builds (docs/policy-contract.md#output): without a method there is nothing to judge, and no
# route.
test_decision_defined_for_empty_input if {
	d := keyauthz.decision with input as {} with data.keyauthz.routes.index as route_index
	d == {
		"allow": false,
		"status": 403,
		"message": "method not allowed",
		"route": {"resource": "", "access": "", "gate": ""},
		"permissions": "user",
	}
}

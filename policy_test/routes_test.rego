# The route table (docs/policy-contract.md#the-default-table): each row's scope, access and gate
# with an allow and a deny, the staff API, routes not in the table, literal segments against
# parameters, and the decision's route and permissions output.
package keyauthz_test

route_cases := [
	{"note": "api_keys index: admin with api_keys.read", "req": "GET api_keys", "scopes": ["api_keys.read"], "perm": "admin", "want": 200},
	{"note": "api_keys index: support", "req": "GET api_keys", "scopes": ["api_keys.read"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "api_keys show: admin", "req": "GET api_keys/k1", "scopes": ["api_keys.read"], "perm": "admin", "want": 200},
	{"note": "api_keys show: no scope", "req": "GET api_keys/k1", "scopes": [], "perm": "admin", "want": 403, "msg": "missing scope: api_keys.read or public.read"},
	{"note": "api_keys create: api_keys.write", "req": "POST api_keys", "scopes": ["api_keys.write"], "perm": "admin", "want": 200},
	{"note": "api_keys create: api_keys.read", "req": "POST api_keys", "scopes": ["api_keys.read"], "perm": "admin", "want": 403},
	{"note": "api_keys update", "req": "PATCH api_keys/k1", "scopes": ["api_keys"], "perm": "admin", "want": 200},
	{"note": "api_keys replace", "req": "PUT api_keys/k1", "scopes": ["api_keys"], "perm": "admin_support", "want": 200},
	{"note": "api_keys delete: support", "req": "DELETE api_keys/k1", "scopes": ["api_keys"], "perm": "support", "want": 403},
	{"note": "ldap_auths read: admin", "req": "GET ldap_auths", "scopes": ["ldap_authentications.read"], "perm": "admin", "want": 200},
	{"note": "ldap_auths write: read scope", "req": "POST ldap_auths", "scopes": ["ldap_authentications.read"], "perm": "admin", "want": 403},
	{"note": "saml_auths show: admin", "req": "GET saml_auths/s1", "scopes": ["saml_authentications"], "perm": "admin", "want": 200},
	{"note": "saml_auths delete: support", "req": "DELETE saml_auths/s1", "scopes": ["saml_authentications"], "perm": "support", "want": 403},
	{"note": "oauth_auths update: admin", "req": "PUT oauth_auths/o1", "scopes": ["o_auth_authentications.write"], "perm": "admin", "want": 200},
	{"note": "oauth_auths read: write scope", "req": "GET oauth_auths", "scopes": ["o_auth_authentications.write"], "perm": "admin", "want": 403},
	{"note": "oauth_apps create: admin", "req": "POST oauth_apps", "scopes": ["o_auth_applications"], "perm": "admin", "want": 200},
	{"note": "oauth_apps read: the auths scope", "req": "GET oauth_apps", "scopes": ["o_auth_authentications"], "perm": "admin", "want": 403},
	{"note": "cluster read: admin", "req": "GET cluster", "scopes": ["cluster.read"], "perm": "admin", "want": 200},
	{"note": "cluster delete: support", "req": "DELETE cluster/n1", "scopes": ["cluster"], "perm": "support", "want": 403},
]

test_routes[c.note] if {
	some c in route_cases
	ok(c)
}

route_support_cases := [
	{"note": "brokers read: support", "req": "GET brokers", "scopes": ["brokers.read"], "perm": "support", "want": 200},
	{"note": "brokers read: user", "req": "GET brokers/b1", "scopes": ["brokers.read"], "want": 403, "msg": "requires support permissions"},
	{"note": "brokers create: admin", "req": "POST brokers", "scopes": ["brokers"], "perm": "admin", "want": 200},
	{"note": "domains read: support", "req": "GET domains/d1", "scopes": ["domains"], "perm": "support", "want": 200},
	{"note": "domains update: support", "req": "PATCH domains/d1", "scopes": ["domains"], "perm": "support", "want": 403},
	{"note": "repositories read: support", "req": "GET repositories", "scopes": ["repositories.read"], "perm": "support", "want": 200},
	{"note": "repositories delete: admin", "req": "DELETE repositories/r1", "scopes": ["repositories.write"], "perm": "admin", "want": 200},
	{"note": "triggers read: support", "req": "GET triggers/t1", "scopes": ["triggers"], "perm": "support", "want": 200},
	{"note": "triggers read: user", "req": "GET triggers", "scopes": ["triggers"], "want": 403},
]

test_routes_support[c.note] if {
	some c in route_support_cases
	ok(c)
}

route_resource_cases := [
	{"note": "settings update: admin", "req": "PUT settings/s1", "scopes": ["settings.write"], "perm": "admin", "want": 200},
	{"note": "settings read: user", "req": "GET settings", "scopes": ["settings.read"], "want": 403},
	{"note": "modules read: support", "req": "GET modules/m1", "scopes": ["modules.read"], "perm": "support", "want": 200},
	{"note": "modules create: support", "req": "POST modules", "scopes": ["modules"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "edges delete: admin", "req": "DELETE edges/e1", "scopes": ["edges"], "perm": "admin", "want": 200},
	{"note": "edges read: user", "req": "GET edges", "scopes": ["edges"], "want": 403},
	{"note": "drivers read: user", "req": "GET drivers/d1", "scopes": ["drivers.read"], "want": 200},
	{"note": "drivers create: support", "req": "POST drivers", "scopes": ["drivers"], "perm": "support", "want": 403},
	{"note": "drivers create: admin", "req": "POST drivers", "scopes": ["drivers.write"], "perm": "admin", "want": 200},
]

test_routes_resources[c.note] if {
	some c in route_resource_cases
	ok(c)
}

route_systems_cases := [
	{"note": "systems show: systems.read", "req": "GET systems/sys-1", "scopes": ["systems.read"], "want": 200},
	{"note": "systems show: zones.read", "req": "GET systems/sys-1", "scopes": ["zones.read"], "want": 403},
	{"note": "systems create: support", "req": "POST systems", "scopes": ["systems.write"], "perm": "support", "want": 200},
	{"note": "systems create: user", "req": "POST systems", "scopes": ["systems.write"], "want": 403, "msg": "requires support permissions"},
	{"note": "systems update: support", "req": "PUT systems/sys-1", "scopes": ["systems"], "perm": "support", "want": 200},
	{"note": "systems delete: support", "req": "DELETE systems/sys-1", "scopes": ["systems"], "perm": "support", "want": 403},
	{"note": "systems zones: admin", "req": "GET systems/sys-1/zones", "scopes": ["systems.read"], "perm": "admin", "want": 200},
	{"note": "systems zones: support", "req": "GET systems/sys-1/zones", "scopes": ["systems.read"], "perm": "support", "want": 403},
]

test_routes_systems[c.note] if {
	some c in route_systems_cases
	ok(c)
}

route_zones_users_cases := [
	{"note": "zones show: user", "req": "GET zones/zone-1", "scopes": ["zones.read"], "want": 200},
	{"note": "zones update: support", "req": "PUT zones/zone-1", "scopes": ["zones.write"], "perm": "support", "want": 200},
	{"note": "zones delete: user", "req": "DELETE zones/zone-1", "scopes": ["zones"], "want": 403, "msg": "requires support permissions"},
	{"note": "users show: users.read", "req": "GET users/user-2", "scopes": ["users.read"], "want": 200},
	{"note": "users create: admin", "req": "POST users", "scopes": ["users.write"], "perm": "admin", "want": 200},
	{"note": "users create: support", "req": "POST users", "scopes": ["users.write"], "perm": "support", "want": 403},
	{"note": "users delete: admin", "req": "DELETE users/user-2", "scopes": ["users"], "perm": "admin", "want": 200},
	{"note": "metadata children: metadata.read", "req": "GET metadata/zone-1/children", "scopes": ["metadata.read"], "want": 200},
	{"note": "metadata delete: metadata.write", "req": "DELETE metadata/zone-1", "scopes": ["metadata.write"], "want": 200},
	{"note": "metadata delete: metadata.read", "req": "DELETE metadata/zone-1", "scopes": ["metadata.read"], "want": 403},
]

test_routes_zones_users[c.note] if {
	some c in route_zones_users_cases
	ok(c)
}

# Routes outside the table's rows: the staff API and the catch-all, with access by method.
unlisted_cases := [
	{"note": "staff GET is read", "req": "GET /api/staff/v1/bookings/b1", "scopes": ["public.read"], "want": 200, "route": {"resource": "public", "access": "read", "gate": "none"}},
	{"note": "staff GET with systems.read", "req": "GET /api/staff/v1/bookings", "scopes": ["systems.read"], "want": 403, "msg": "missing scope: public.read"},
	{"note": "staff health is under the prefix", "req": "GET /api/staff/v1", "scopes": ["public.read"], "want": 200},
	{"note": "staff POST is write", "req": "POST /api/staff/v1/bookings", "scopes": ["public.write"], "want": 200, "route": {"resource": "public", "access": "write", "gate": "none"}},
	{"note": "staff POST with public.read", "req": "POST /api/staff/v1/bookings", "scopes": ["public.read"], "want": 403, "msg": "missing scope: public.write"},
	{"note": "staff DELETE is write", "req": "DELETE /api/staff/v1/bookings/b1", "scopes": ["public.write"], "want": 200},
	{"note": "staff DELETE with public.read", "req": "DELETE /api/staff/v1/bookings/b1", "scopes": ["public.read"], "want": 403},
	{"note": "staff HEAD is judged as GET: read", "req": "HEAD /api/staff/v1/bookings", "scopes": ["public.read"], "want": 200, "route": {"resource": "public", "access": "read", "gate": "none"}},
	{"note": "staff OPTIONS is judged as GET: read", "req": "OPTIONS /api/staff/v1/bookings", "scopes": ["public.read"], "want": 200, "route": {"resource": "public", "access": "read", "gate": "none"}},
	{"note": "staff lowercase get is not a method", "req": "get /api/staff/v1/bookings", "scopes": ["public.read"], "want": 403, "msg": "method not allowed"},
	{"note": "other GET is read", "req": "GET webrtc/rooms", "scopes": ["public.read"], "want": 200, "route": {"resource": "public", "access": "read", "gate": "none"}},
	{"note": "other GET needs public", "req": "GET webrtc/rooms", "scopes": ["systems"], "want": 403},
	{"note": "other POST is write", "req": "POST webrtc/rooms", "scopes": ["public.write"], "want": 200},
	{"note": "other POST with public.read", "req": "POST webrtc/rooms", "scopes": ["public.read"], "want": 403, "route": {"resource": "public", "access": "write", "gate": "none"}},
	{"note": "other HEAD is read", "req": "HEAD webrtc/rooms", "scopes": ["public.read"], "want": 200},
	{"note": "other OPTIONS is read", "req": "OPTIONS webrtc/rooms", "scopes": ["public.read"], "want": 200},
	{"note": "other PATCH with public.read", "req": "PATCH webrtc/rooms/r1", "scopes": ["public.read"], "want": 403},
	{"note": "a method the table does not list is unlisted", "req": "PUT systems", "scopes": ["systems"], "want": 403, "msg": "missing scope: public.write"},
	{"note": "HEAD of a listed path is its GET route, not unlisted", "req": "HEAD systems", "scopes": ["systems.read"], "want": 200, "route": {"resource": "systems", "access": "read", "gate": "none"}},
	{"note": "outside the API", "req": "GET /", "scopes": ["public.read"], "want": 200},
	{"note": "deeper than any row", "req": "GET systems/sys-1/Display_1/power/extra", "scopes": ["systems.read"], "perm": "support", "want": 403},
]

test_unlisted[c.note] if {
	some c in unlisted_cases
	ok(c)
}

# Literal segments win over parameters, and the decision names the route and level it used.
specificity_cases := [
	{"note": "systems/control is the websocket, not a show", "req": "GET systems/control", "scopes": ["systems.read"], "want": 403, "route": {"resource": "control", "access": "write", "gate": "none"}},
	{"note": "systems/control with control.write", "req": "GET systems/control", "scopes": ["control.write"], "want": 200},
	{"note": "systems/:id is a show", "req": "GET systems/sys-1", "scopes": ["systems.read"], "want": 200, "route": {"resource": "systems", "access": "read", "gate": "none"}},
	{"note": "api_keys/inspect is authenticated, not api_keys/:id", "req": "GET api_keys/inspect", "scopes": [], "want": 200, "route": {"resource": "", "access": "read", "gate": "none"}},
	{"note": "api_keys/:id needs the admin gate", "req": "GET api_keys/inspector", "scopes": ["api_keys"], "want": 403, "route": {"resource": "api_keys", "access": "read", "gate": "admin"}},
	{"note": "PATCH api_keys/inspect is api_keys/:id", "req": "PATCH api_keys/inspect", "scopes": [], "want": 403, "msg": "missing scope: api_keys.write or public.write"},
	{"note": "users/current is authenticated, not users/:id", "req": "GET users/current", "scopes": ["zones.read"], "want": 200, "msg": "authenticated route"},
	{"note": "users/:id is a show", "req": "GET users/current-ish", "scopes": ["zones.read"], "want": 403},
	{"note": "systems/:id/types before systems/:id/:module", "req": "GET systems/sys-1/types", "scopes": ["control.read"], "want": 200, "route": {"resource": "control", "access": "read", "gate": "none"}},
	{"note": "systems/:id/zones before systems/:id/:module", "req": "GET systems/sys-1/zones", "scopes": ["systems"], "perm": "support", "want": 403, "route": {"resource": "systems", "access": "read", "gate": "admin"}},
	{"note": "functions/:module before :module/:key", "req": "GET systems/sys-1/functions/Display_1", "scopes": ["control"], "want": 403, "route": {"resource": "control", "access": "read", "gate": "support"}},
	{"note": "admin_or_self output", "req": "PATCH users/user-1", "scopes": ["users.write"], "perm": "admin", "user": "support", "want": 200, "route": {"resource": "users", "access": "write", "gate": "admin_or_self"}, "perms": "support"},
	{"note": "denied decisions carry the capped level", "req": "DELETE users/user-2", "scopes": ["users"], "perm": "admin_support", "user": "support", "want": 403, "route": {"resource": "users", "access": "write", "gate": "admin"}, "perms": "support"},
	{"note": "no credential: level user", "req": "GET systems", "want": 401, "route": {"resource": "systems", "access": "read", "gate": "none"}, "perms": "user"},
]

test_specificity[c.note] if {
	some c in specificity_cases
	ok(c)
}

# One full decision, to pin the output's shape.
test_decision_shape if {
	decision({"note": "shape", "req": "GET systems/sys-1", "scopes": ["systems.read"], "perm": "support", "want": 200}) == {
		"allow": true,
		"status": 200,
		"message": "allowed",
		"route": {"resource": "systems", "access": "read", "gate": "none"},
		"permissions": "support",
	}
}

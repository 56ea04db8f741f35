# Judge what the backend will run (docs/policy-contract.md#judging-what-the-backend-will-run):
# the method as the client sent it, HEAD and OPTIONS as GET on the same path, and literal
# segments of the route table in any case, so that no spelling of a gated route falls through to
# the looser catch-all route (issue 9's 17 spellings; those Go refuses as ambiguous paths are
# tested in internal/opa and internal/authz).
package keyauthz_test

no_route := {"resource": "", "access": "", "gate": ""}

# A method outside GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS, spelled exactly so, is
# refused before any other rule: before the anonymous route, missing credentials and domains.
method_cases := [
	{"note": "lower-case get", "req": "get zones", "scopes": ["zones.read"], "want": 403, "msg": "method not allowed", "route": no_route},
	{"note": "lower-case head", "req": "head api_keys", "scopes": kiosk, "want": 403, "msg": "method not allowed"},
	{"note": "capitalised Delete", "req": "Delete systems/sys-1", "scopes": ["public"], "perm": "admin", "want": 403, "msg": "method not allowed", "route": no_route, "perms": "admin"},
	{"note": "lower-case options", "req": "options systems", "scopes": ["systems"], "want": 403, "msg": "method not allowed"},
	{"note": "WebDAV PROPFIND", "req": "PROPFIND /api/staff/v1/bookings", "scopes": ["public"], "want": 403, "msg": "method not allowed"},
	{"note": "TRACE", "req": "TRACE webrtc/rooms", "scopes": ["public"], "want": 403, "msg": "method not allowed"},
	{"note": "CONNECT", "req": "CONNECT webrtc/rooms", "scopes": ["public"], "want": 403, "msg": "method not allowed"},
	{"note": "an empty method", "req": " systems", "scopes": ["public"], "want": 403, "msg": "method not allowed", "route": no_route},
	{"note": "before the anonymous route", "req": "get /api/engine/v2", "want": 403, "msg": "method not allowed", "route": no_route},
	{"note": "before missing credentials", "req": "post api_keys", "want": 403, "msg": "method not allowed"},
	{"note": "before an unknown host", "req": "PROPFIND systems", "scopes": ["public"], "host": "nowhere.example.com", "want": 403, "msg": "method not allowed"},
	{"note": "before a key of another domain", "req": "Get systems", "scopes": ["public"], "keydom": "authority-other", "want": 403, "msg": "method not allowed"},
	{"note": "GET", "req": "GET webrtc/rooms", "scopes": ["public.read"], "want": 200},
	{"note": "HEAD", "req": "HEAD webrtc/rooms", "scopes": ["public.read"], "want": 200},
	{"note": "OPTIONS", "req": "OPTIONS webrtc/rooms", "scopes": ["public.read"], "want": 200},
	{"note": "POST", "req": "POST webrtc/rooms", "scopes": ["public.write"], "want": 200},
	{"note": "PUT", "req": "PUT webrtc/rooms/r1", "scopes": ["public.write"], "want": 200},
	{"note": "PATCH", "req": "PATCH webrtc/rooms/r1", "scopes": ["public.write"], "want": 200},
	{"note": "DELETE", "req": "DELETE webrtc/rooms/r1", "scopes": ["public.write"], "want": 200},
]

test_methods[c.note] if {
	some c in method_cases
	ok(c)
}

# HEAD and OPTIONS get the GET route of their path: its scopes, access, gate and guest rule,
# never the catch-all that needs only public.
head_options_cases := [
	{"note": "HEAD api_keys: the admin gate, not the catch-all", "req": "HEAD api_keys", "scopes": ["public.read"], "want": 403, "msg": "requires admin permissions", "route": {"resource": "api_keys", "access": "read", "gate": "admin"}},
	{"note": "OPTIONS api_keys: the admin gate", "req": "OPTIONS api_keys", "scopes": ["public.read"], "want": 403, "msg": "requires admin permissions", "route": {"resource": "api_keys", "access": "read", "gate": "admin"}},
	{"note": "HEAD api_keys with an admin api_keys.read key", "req": "HEAD api_keys", "scopes": ["api_keys.read"], "perm": "admin", "want": 200},
	{"note": "HEAD api_keys/:id: the admin gate", "req": "HEAD api_keys/0123", "scopes": ["public"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "OPTIONS users/:id is the read route, not admin_or_self", "req": "OPTIONS users/user-2", "scopes": ["users.read"], "want": 200, "route": {"resource": "users", "access": "read", "gate": "none"}},
	{"note": "HEAD brokers: the support gate", "req": "HEAD brokers", "scopes": ["public.read"], "want": 403, "msg": "requires support permissions"},
	{"note": "OPTIONS systems/:id/zones: the admin gate", "req": "OPTIONS systems/sys-1/zones", "scopes": ["systems"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "HEAD systems needs the GET route's scope", "req": "HEAD systems", "scopes": ["zones.read"], "want": 403, "msg": "missing scope: systems.read or public.read"},
	{"note": "HEAD systems with systems.read", "req": "HEAD systems", "scopes": ["systems.read"], "want": 200, "route": {"resource": "systems", "access": "read", "gate": "none"}},
	{"note": "HEAD systems with only systems.write", "req": "HEAD systems", "scopes": ["systems.write"], "want": 403, "msg": "missing scope: systems.read or public.read"},
	{"note": "OPTIONS systems/:id/:module: the support gate", "req": "OPTIONS systems/sys-1/Display_1", "scopes": ["control"], "want": 403, "msg": "requires support permissions"},
	{"note": "HEAD of the control websocket keeps its write access", "req": "HEAD systems/control", "scopes": ["systems.read"], "want": 403, "route": {"resource": "control", "access": "write", "gate": "none"}},
	{"note": "HEAD guest show in groups", "req": "HEAD systems/sys-1", "scopes": ["guest"], "groups": ["sys-1"], "want": 200},
	{"note": "HEAD guest show outside groups", "req": "HEAD systems/sys-2", "scopes": ["guest"], "groups": ["sys-1"], "want": 403, "msg": "guest access denied: the request is outside the guest's roles"},
	{"note": "HEAD the authenticated inspect route", "req": "HEAD api_keys/inspect", "scopes": [], "want": 200, "msg": "authenticated route"},
	{"note": "HEAD health without a credential", "req": "HEAD /api/engine/v2", "want": 200, "msg": "anonymous route"},
	{"note": "OPTIONS without a credential", "req": "OPTIONS systems", "want": 401, "msg": "missing credentials"},
	{"note": "HEAD of a POST-only path is the catch-all read", "req": "HEAD signal", "scopes": ["public.read"], "want": 200, "route": {"resource": "public", "access": "read", "gate": "none"}},
]

test_head_options_as_get[c.note] if {
	some c in head_options_cases
	ok(c)
}

# Literal segments match in any case (the stricter reading: a backend that ignores case runs
# the gated handler); parameters keep the request's case, so guest roles and the self check
# compare ids exactly as sent.
literal_case_cases := [
	{"note": "API_KEYS in upper case: the admin gate", "req": "GET /API/Engine/V2/API_KEYS", "scopes": ["public.read"], "want": 403, "msg": "requires admin permissions", "route": {"resource": "api_keys", "access": "read", "gate": "admin"}},
	{"note": "Api_Keys/:id in mixed case: the admin gate", "req": "GET /api/engine/v2/Api_Keys/0123", "scopes": ["public"], "want": 403, "msg": "requires admin permissions"},
	{"note": "HEAD in upper case: both rules at once", "req": "HEAD /API/ENGINE/V2/API_KEYS", "scopes": ["public.read"], "want": 403, "msg": "requires admin permissions"},
	{"note": "POST API_KEYS: the admin gate", "req": "POST /API/ENGINE/V2/API_KEYS", "scopes": ["public"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "Systems/CONTROL is the websocket literal (no route reads it case-sensitively)", "req": "GET Systems/CONTROL", "scopes": ["systems.read"], "want": 403, "route": {"resource": "control", "access": "write", "gate": "none"}},
	{"note": "DELETE Systems/:id: the admin gate", "req": "DELETE /Api/Engine/V2/Systems/sys-1", "scopes": ["systems"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "LDAP_AUTHS: the admin gate", "req": "GET /api/engine/v2/LDAP_AUTHS", "scopes": ["public.read"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
	{"note": "STAFF prefix in upper case", "req": "POST /API/STAFF/V1/bookings", "scopes": ["public.read"], "want": 403, "msg": "missing scope: public.write"},
	{"note": "SIGNAL in upper case needs root", "req": "POST /API/ENGINE/V2/SIGNAL?channel=/placeos/sys-1/x", "scopes": ["root.read"], "want": 403, "msg": "missing scope: root.write or public.write"},
	{"note": "SIGNAL in upper case, guest channel", "req": "POST /API/ENGINE/V2/SIGNAL?channel=/placeos/guest/x", "scopes": ["guest"], "want": 200},
	{"note": "health in upper case is the health route", "req": "GET /API/ENGINE/V2", "want": 200, "msg": "anonymous route"},
	{"note": "self with a mixed-case id", "req": "PATCH users/user-V3BpiKgIn8EHzF", "scopes": ["users.write"], "uid": "user-V3BpiKgIn8EHzF", "want": 200},
	{"note": "self through upper-case literals", "req": "PATCH /API/ENGINE/V2/USERS/user-V3BpiKgIn8EHzF", "scopes": ["users.write"], "uid": "user-V3BpiKgIn8EHzF", "want": 200},
	{"note": "self id in another case is another user", "req": "PATCH users/user-v3bpikgin8ehzf", "scopes": ["users.write"], "uid": "user-V3BpiKgIn8EHzF", "want": 403, "msg": "requires admin permissions or the user's own record"},
	{"note": "self id in upper case is another user", "req": "PUT USERS/USER-1", "scopes": ["users.write"], "want": 403, "msg": "requires admin permissions or the user's own record"},
	{"note": "guest role through upper-case literals", "req": "GET /API/Engine/V2/SYSTEMS/sys-AbC", "scopes": ["guest"], "groups": ["sys-AbC"], "want": 200},
	{"note": "guest role in another case is not the role", "req": "GET systems/SYS-ABC", "scopes": ["guest"], "groups": ["sys-AbC"], "want": 403, "msg": "guest access denied: the request is outside the guest's roles"},
	{"note": "guest metadata role keeps its case", "req": "GET Metadata/zone-Q1/Children", "scopes": ["guest"], "groups": ["zone-Q1"], "want": 200},
]

test_literal_case[c.note] if {
	some c in literal_case_cases
	ok(c)
}

# A path whose literal segments match a route only in another case, while a backend matching
# case-sensitively reads it as another route of the table (a parameter there), is ambiguous:
# refused whoever asks, before credentials, since either reading may be the looser one.
ambiguous_case_cases := [
	{"note": "api_keys/INSPECT: inspect, or the key INSPECT", "req": "GET api_keys/INSPECT", "scopes": [], "want": 403, "msg": "ambiguous path"},
	{"note": "api_keys/Inspect for an admin", "req": "GET api_keys/Inspect", "scopes": ["public"], "perm": "admin", "want": 403, "msg": "ambiguous path"},
	{"note": "HEAD api_keys/INSPECT", "req": "HEAD api_keys/INSPECT", "scopes": [], "want": 403, "msg": "ambiguous path"},
	{"note": "users/CURRENT: current, or the user CURRENT", "req": "GET users/CURRENT", "scopes": ["users.read"], "want": 403, "msg": "ambiguous path"},
	{"note": "users/CURRENT without a credential", "req": "GET users/CURRENT", "want": 403, "msg": "ambiguous path"},
	{"note": "systems/:id/TYPES: types, or the module TYPES", "req": "GET systems/sys-1/TYPES", "scopes": ["control.read"], "want": 403, "msg": "ambiguous path", "route": {"resource": "control", "access": "read", "gate": "none"}},
	{"note": "systems/:id/ZONES for an admin", "req": "GET systems/sys-1/ZONES", "scopes": ["systems"], "perm": "admin", "want": 403, "msg": "ambiguous path"},
	{"note": "systems/:id/Functions/:module", "req": "GET systems/sys-1/Functions/Display_1", "scopes": ["control"], "perm": "support", "want": 403, "msg": "ambiguous path"},
	{"note": "systems/CONTROL: the websocket, or the system CONTROL", "req": "GET systems/CONTROL", "scopes": ["public"], "perm": "admin", "want": 403, "msg": "ambiguous path"},
	{"note": "not ambiguous: upper-case ids", "req": "GET systems/sys-AbC/Display_1/Power", "scopes": ["control"], "perm": "support", "want": 200, "route": {"resource": "control", "access": "read", "gate": "support"}},
	{"note": "not ambiguous: upper-case literals no route reads otherwise", "req": "GET /API/ENGINE/V2/API_KEYS/INSPECT", "scopes": [], "want": 200, "msg": "authenticated route"},
	{"note": "not ambiguous: the lower-case spelling", "req": "GET api_keys/inspect", "scopes": [], "want": 200, "msg": "authenticated route"},
	{"note": "after the method check", "req": "get api_keys/INSPECT", "scopes": [], "want": 403, "msg": "method not allowed"},
]

test_ambiguous_case[c.note] if {
	some c in ambiguous_case_cases
	ok(c)
}

# A format suffix on the last segment (Rails-style `(.:format)`: `api_keys.json` runs the
# `api_keys` index) that makes the path match another route than the path without it is
# ambiguous: refused whoever asks, before credentials, like a case-ambiguous path. Where both
# readings are the same route, the suffix changes nothing.
catch_all := {"resource": "public", "access": "read", "gate": "none"}

format_suffix_cases := [
	{"note": "GET api_keys.json: the catch-all, or the api_keys index", "req": "GET api_keys.json", "scopes": ["public"], "want": 403, "msg": "ambiguous path", "route": catch_all},
	{"note": "POST api_keys.json", "req": "POST api_keys.json", "scopes": ["public"], "want": 403, "msg": "ambiguous path", "route": {"resource": "public", "access": "write", "gate": "none"}},
	{"note": "POST users.json", "req": "POST users.json", "scopes": ["public"], "want": 403, "msg": "ambiguous path"},
	{"note": "GET domains.json", "req": "GET domains.json", "scopes": ["public"], "want": 403, "msg": "ambiguous path"},
	{"note": "GET cluster.json for a support key", "req": "GET cluster.json", "scopes": ["public"], "perm": "support", "want": 403, "msg": "ambiguous path"},
	{"note": "HEAD api_keys.json", "req": "HEAD api_keys.json", "scopes": ["public.read"], "want": 403, "msg": "ambiguous path"},
	{"note": "OPTIONS brokers.xml", "req": "OPTIONS brokers.xml", "scopes": ["public.read"], "want": 403, "msg": "ambiguous path"},
	{"note": "upper-case API_KEYS.JSON", "req": "GET /API/ENGINE/V2/API_KEYS.JSON", "scopes": ["public"], "want": 403, "msg": "ambiguous path"},
	{"note": "systems/:id/zones.json: the support-gated :module, or the admin-gated zones", "req": "GET systems/sys-1/zones.json", "scopes": ["control", "systems"], "perm": "support", "want": 403, "msg": "ambiguous path", "route": {"resource": "control", "access": "read", "gate": "support"}},
	{"note": "systems/:id/types.json: :module, or types", "req": "GET systems/sys-1/types.json", "scopes": ["control"], "perm": "support", "want": 403, "msg": "ambiguous path"},
	{"note": "systems/control.json: the show of a system, or the control websocket", "req": "GET systems/control.json", "scopes": ["systems.read"], "want": 403, "msg": "ambiguous path", "route": {"resource": "systems", "access": "read", "gate": "none"}},
	{"note": "api_keys/inspect.json: the admin-gated key, or inspect", "req": "GET api_keys/inspect.json", "scopes": ["public"], "perm": "admin", "want": 403, "msg": "ambiguous path", "route": {"resource": "api_keys", "access": "read", "gate": "admin"}},
	{"note": "users/current.json", "req": "GET users/current.json", "scopes": ["users.read"], "want": 403, "msg": "ambiguous path"},
	{"note": "metadata/:id/children.json", "req": "GET metadata/zone-1/children.json", "scopes": ["metadata.read"], "want": 403, "msg": "ambiguous path"},
	{"note": "v2.json: the catch-all, or the health route", "req": "GET /api/engine/v2.json", "want": 403, "msg": "ambiguous path"},
	{"note": "refused for an admin", "req": "GET api_keys.json", "scopes": ["public"], "perm": "admin", "want": 403, "msg": "ambiguous path", "perms": "admin"},
	{"note": "refused without a credential", "req": "GET api_keys.json", "want": 403, "msg": "ambiguous path"},
	{"note": "refused on an unknown host", "req": "POST users.json", "scopes": ["public"], "host": "nowhere.example.com", "want": 403, "msg": "ambiguous path"},
	{"note": "the last '.' is the suffix: api_keys.json.json is the catch-all both ways", "req": "GET api_keys.json.json", "scopes": ["public.read"], "want": 200, "route": catch_all},
	{"note": "after the method check", "req": "get api_keys.json", "scopes": ["public"], "want": 403, "msg": "method not allowed"},
	{"note": "unchanged: systems/:id.json is systems/:id either way", "req": "GET systems/sys-1.json", "scopes": ["systems.read"], "want": 200, "route": {"resource": "systems", "access": "read", "gate": "none"}},
	{"note": "unchanged: guest show of sys-1.json keeps the id as sent", "req": "GET systems/sys-1.json", "scopes": ["guest"], "groups": ["sys-1"], "want": 403, "msg": "guest access denied: the request is outside the guest's roles"},
	{"note": "unchanged: a dotted id", "req": "GET users/john.doe", "scopes": ["users.read"], "want": 200, "route": {"resource": "users", "access": "read", "gate": "none"}},
	{"note": "unchanged: api_keys/:id.json keeps the admin gate", "req": "GET api_keys/k-1.json", "scopes": ["public"], "want": 403, "msg": "requires admin permissions"},
	{"note": "unchanged: systems/:id/:module.json keeps the support gate", "req": "GET systems/sys-1/Display_1.json", "scopes": ["control"], "want": 403, "msg": "requires support permissions"},
	{"note": "unchanged: systems/:id/:module/:method.json", "req": "POST systems/sys-1/Display_1/power_on.json", "scopes": ["control"], "want": 200, "route": {"resource": "control", "access": "write", "gate": "none"}},
	{"note": "unchanged: a staff prefix path", "req": "GET /api/staff/v1/bookings.json", "scopes": ["public.read"], "want": 200, "route": catch_all},
	{"note": "unchanged: a path no route matches either way", "req": "GET webrtc/rooms.json", "scopes": ["public.read"], "want": 200, "route": catch_all},
	{"note": "any suffix Rails takes for a format: x-y", "req": "GET api_keys.x-y", "scopes": ["public.read"], "want": 403, "msg": "ambiguous path"},
	{"note": "not a format suffix: a trailing '.' alone", "req": "GET systems/sys-1/zones.", "scopes": ["control"], "want": 403, "msg": "requires support permissions"},
	{"note": "not a format suffix: a '.' before the last segment", "req": "GET systems/sys.1/zones", "scopes": ["systems"], "perm": "support", "want": 403, "msg": "requires admin permissions"},
]

test_format_suffix[c.note] if {
	some c in format_suffix_cases
	ok(c)
}

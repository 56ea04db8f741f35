# Cross-site requests with an ambient key
# (docs/policy-contract.md#cross-site-writes-with-ambient-keys): a key a browser adds by itself
# (a cookie or a URL parameter) may not write, nor open a websocket, on a request another site
# started (input.request.cross_site). Header keys, reads and same-site requests are unaffected;
# the check comes after the 401 checks and before scopes and gates.
package keyauthz_test

import data.keyauthz

cross_site_message := "cross-site request with a cookie or URL key"

cross_site_cases := [
	{"note": "cookie key creates a key cross-site", "req": "POST api_keys", "scopes": ["public"], "perm": "admin", "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message, "route": {"resource": "api_keys", "access": "write", "gate": "admin"}, "perms": "admin"},
	{"note": "URL key creates a user cross-site", "req": "POST users", "scopes": ["users"], "perm": "admin", "source": "query", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key creates a domain cross-site", "req": "POST domains", "scopes": ["public"], "perm": "admin", "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key patches its own user cross-site", "req": "PATCH users/user-1", "scopes": ["users.write"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key deletes cross-site", "req": "DELETE zones/zone-1", "scopes": ["zones"], "perm": "support", "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key executes a function cross-site", "req": "POST systems/sys-1/Display_1/power_on", "scopes": panel, "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key signals cross-site", "req": "POST signal?channel=/placeos/guest/x", "scopes": ["guest"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key writes the staff API cross-site", "req": "PUT /api/staff/v1/bookings/b1", "scopes": ["public"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key writes an unlisted path cross-site", "req": "POST webrtc/rooms", "scopes": ["public"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "cookie key opens the control websocket cross-site", "req": "GET systems/control", "scopes": ["control"], "source": "cookie", "proto": "websocket", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "URL key opens the control websocket cross-site", "req": "GET systems/control", "scopes": ["control"], "source": "query", "proto": "websocket", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "a websocket on a read route is refused too", "req": "GET systems/sys-1", "scopes": ["systems.read"], "source": "query", "proto": "websocket", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "a key of no known source counts as ambient", "req": "POST zones", "scopes": ["zones"], "perm": "support", "source": "bearer", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "before the scope check", "req": "POST zones", "scopes": ["zones.read"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "before the gate", "req": "DELETE systems/sys-1", "scopes": ["systems"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
	{"note": "after the domain check", "req": "POST zones", "scopes": ["zones"], "perm": "support", "keydom": "authority-other", "source": "cookie", "xsite": true, "want": 401, "msg": "authority domain does not match token's"},
	{"note": "after the host check", "req": "POST zones", "scopes": ["zones"], "perm": "support", "host": "nowhere.example.com", "source": "cookie", "xsite": true, "want": 401, "msg": "authority not found"},
	{"note": "after the method check", "req": "PROPFIND zones", "scopes": ["zones"], "source": "cookie", "xsite": true, "want": 403, "msg": "method not allowed"},
	{"note": "no key: missing credentials", "req": "POST zones", "xsite": true, "want": 401, "msg": "missing credentials"},
	{"note": "header key writes cross-site", "req": "POST api_keys", "scopes": ["public"], "perm": "admin", "source": "header", "xsite": true, "want": 200},
	{"note": "header key executes cross-site", "req": "POST systems/sys-1/Display_1/power_on", "scopes": panel, "source": "header", "xsite": true, "want": 200},
	{"note": "header key opens the websocket cross-site", "req": "GET systems/control", "scopes": ["control"], "source": "header", "proto": "websocket", "xsite": true, "want": 200},
	{"note": "cookie key writes same-site", "req": "POST api_keys", "scopes": ["public"], "perm": "admin", "source": "cookie", "want": 200},
	{"note": "URL key executes same-site", "req": "POST systems/sys-1/Display_1/power_on", "scopes": panel, "source": "query", "want": 200},
	{"note": "URL key opens the websocket same-site", "req": "GET systems/control", "scopes": ["control"], "source": "query", "proto": "websocket", "want": 200},
	{"note": "cookie key reads cross-site", "req": "GET systems/sys-1", "scopes": ["systems.read"], "source": "cookie", "xsite": true, "want": 200},
	{"note": "URL key reads the staff API cross-site", "req": "GET /api/staff/v1/bookings", "scopes": ["public.read"], "source": "query", "xsite": true, "want": 200},
	{"note": "cookie key HEAD cross-site is a read", "req": "HEAD zones", "scopes": ["zones.read"], "source": "cookie", "xsite": true, "want": 200},
	{"note": "cookie key OPTIONS cross-site is a read", "req": "OPTIONS users", "scopes": ["users.read"], "source": "cookie", "xsite": true, "want": 200},
	{"note": "cookie key on the authenticated route cross-site", "req": "GET users/current", "scopes": [], "source": "cookie", "xsite": true, "want": 200, "msg": "authenticated route"},
	{"note": "cookie key on the anonymous route cross-site", "req": "GET /api/engine/v2", "scopes": [], "source": "cookie", "xsite": true, "want": 200, "msg": "anonymous route"},
	{"note": "cookie key, cross-site write without the scope still says cross-site", "req": "PATCH users/user-2", "scopes": ["users.read"], "source": "cookie", "xsite": true, "want": 403, "msg": cross_site_message},
]

test_cross_site[c.note] if {
	some c in cross_site_cases
	ok(c)
}

# An input without cross_site (a hand-written one, or an older keyauthz) is same-site.
test_cross_site_absent_is_same_site if {
	c := {"note": "absent", "req": "POST zones", "scopes": ["zones"], "perm": "support", "source": "cookie"}
	no_cross_site := json.remove(input_for(c), ["request/cross_site"])
	not "cross_site" in object.keys(no_cross_site.request)
	d := keyauthz.decision with input as no_cross_site with data.keyauthz.routes.index as route_index
	d.allow == true
}

# Per-key IP allow-lists (policies/keyauthz/limits.rego, docs/limits.md): a key with
# key.allowed_cidrs is refused (403) unless request.client_ip is in one of its networks, and
# when keyauthz knows no client address (fail closed). The check comes after the 401 checks
# (so a key of another domain is still told so) and before cross-site, scopes and gates; an
# anonymous route ignores the key altogether. Rows are helpers_test.rego's, plus:
#   cidrs   the key's allowed_cidrs (absent: no allow-list)
#   ip      the request's client_ip (absent: unknown)
package keyauthz_test

import data.keyauthz

not_allowed := "client address not allowed for this key"

office := ["192.0.2.0/24", "2001:db8:1::/48"]

limits_cases := [
	{"note": "IPv4 client inside the first network", "req": "GET systems/sys-1", "scopes": panel, "cidrs": office, "ip": "192.0.2.77", "want": 200, "msg": "allowed"},
	{"note": "IPv6 client inside the second network", "req": "GET systems/sys-1", "scopes": panel, "cidrs": office, "ip": "2001:db8:1:ff::9", "want": 200},
	{"note": "IPv4 client outside", "req": "GET systems/sys-1", "scopes": panel, "cidrs": office, "ip": "198.51.100.1", "want": 403, "msg": not_allowed, "route": {"resource": "systems", "access": "read", "gate": "none"}},
	{"note": "IPv6 client outside", "req": "GET systems/sys-1", "scopes": panel, "cidrs": office, "ip": "2001:db8:2::1", "want": 403, "msg": not_allowed},
	{"note": "one address, exact", "req": "GET zones", "scopes": panel, "cidrs": ["203.0.113.5/32"], "ip": "203.0.113.5", "want": 200},
	{"note": "one address, the next one", "req": "GET zones", "scopes": panel, "cidrs": ["203.0.113.5/32"], "ip": "203.0.113.6", "want": 403, "msg": not_allowed},
	{"note": "every IPv4 address admits IPv4", "req": "GET zones", "scopes": panel, "cidrs": ["0.0.0.0/0"], "ip": "198.51.100.1", "want": 200},
	{"note": "every IPv4 address does not admit IPv6", "req": "GET zones", "scopes": panel, "cidrs": ["0.0.0.0/0"], "ip": "2001:db8::1", "want": 403, "msg": not_allowed},
	{"note": "every IPv6 address does not admit IPv4", "req": "GET zones", "scopes": panel, "cidrs": ["::/0"], "ip": "198.51.100.1", "want": 403, "msg": not_allowed},
	{"note": "no client address: fail closed", "req": "GET systems/sys-1", "scopes": panel, "cidrs": office, "want": 403, "msg": not_allowed},
	{"note": "a client address that is no address", "req": "GET systems/sys-1", "scopes": panel, "cidrs": office, "ip": "192.0.2.77, 10.0.0.1", "want": 403, "msg": not_allowed},
	{"note": "no allow-list, no client address", "req": "GET systems/sys-1", "scopes": panel, "want": 200},
	{"note": "no allow-list, any client address", "req": "GET systems/sys-1", "scopes": panel, "ip": "198.51.100.1", "want": 200},
	{"note": "an empty allow-list restricts nothing", "req": "GET systems/sys-1", "scopes": panel, "cidrs": [], "want": 200},
	{"note": "on the authenticated route too", "req": "GET users/current", "scopes": [], "cidrs": office, "ip": "198.51.100.1", "want": 403, "msg": not_allowed},
	{"note": "on an admin write", "req": "POST api_keys", "scopes": ["public"], "perm": "admin", "cidrs": office, "ip": "198.51.100.1", "want": 403, "msg": not_allowed},
	{"note": "admin write from inside", "req": "POST api_keys", "scopes": ["public"], "perm": "admin", "cidrs": office, "ip": "192.0.2.1", "want": 200},
	{"note": "before the scope check", "req": "DELETE systems/sys-1", "scopes": panel, "cidrs": office, "ip": "198.51.100.1", "want": 403, "msg": not_allowed},
	{"note": "before the cross-site check", "req": "POST zones", "scopes": ["zones"], "perm": "support", "source": "cookie", "xsite": true, "cidrs": office, "ip": "198.51.100.1", "want": 403, "msg": not_allowed},
	{"note": "inside, the scope check still applies", "req": "DELETE systems/sys-1", "scopes": panel, "cidrs": office, "ip": "192.0.2.1", "want": 403, "msg": "missing scope: systems.write or public.write"},
	{"note": "after the domain check", "req": "GET zones", "scopes": panel, "keydom": "authority-other", "cidrs": office, "ip": "198.51.100.1", "want": 401, "msg": "authority domain does not match token's"},
	{"note": "after the host check", "req": "GET zones", "scopes": panel, "host": "nowhere.example.com", "cidrs": office, "ip": "198.51.100.1", "want": 401, "msg": "authority not found"},
	{"note": "after the method check", "req": "PROPFIND zones", "scopes": panel, "cidrs": office, "ip": "198.51.100.1", "want": 403, "msg": "method not allowed"},
	{"note": "an anonymous route ignores the key", "req": "GET /api/engine/v2", "scopes": panel, "cidrs": office, "ip": "198.51.100.1", "want": 200, "msg": "anonymous route"},
	{"note": "no key: missing credentials whatever the address", "req": "GET zones", "ip": "198.51.100.1", "want": 401, "msg": "missing credentials"},
]

# limits_input is the row's input with its allow-list and client address added.
limits_input(c) := object.union_n([input_for(c), _cidrs(c), _client_ip(c)])

_cidrs(c) := {"key": {"allowed_cidrs": c.cidrs}} if "cidrs" in object.keys(c)

else := {}

_client_ip(c) := {"request": {"client_ip": c.ip}} if "ip" in object.keys(c)

else := {}

limits_got(c) := {k: d[k] | some k in _checked(c)} if {
	d := keyauthz.decision with input as limits_input(c) with data.keyauthz.routes.index as route_index
}

limits_ok(c) if limits_got(c) == want(c)

limits_ok(c) if {
	limits_got(c) != want(c)
	print(c.note, "want", want(c), "got", limits_got(c))
	false
}

test_limits[c.note] if {
	some c in limits_cases
	limits_ok(c)
}

# Scope semantics (docs/policy-contract.md#scopes, #public and #control): read and write
# suffixes, entries that add up, the public wildcard, case-insensitive suffixes and malformed
# scopes. Rows use GET systems (read, gate none) and execute (write, gate none) so that no gate
# interferes.
package keyauthz_test

scope_cases := [
	{"note": "bare resource reads", "req": "GET systems", "scopes": ["systems"], "want": 200},
	{"note": "bare resource writes", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["systems"], "want": 200},
	{"note": "read suffix does not write", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["systems.read"], "want": 403},
	{"note": "write suffix does not read", "req": "GET systems", "scopes": ["systems.write"], "want": 403, "msg": "missing scope: systems.read or public.read"},
	{"note": "read and write add up: read", "req": "GET systems", "scopes": ["systems.read", "systems.write"], "want": 200},
	{"note": "read and write add up: write", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["systems.read", "systems.write"], "want": 200},
	{"note": "write then read add up", "req": "GET systems", "scopes": ["systems.write", "systems.read"], "want": 200},
	{"note": "a repeated read is still no write", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["systems.read", "systems.read"], "want": 403},
	{"note": "another resource grants nothing", "req": "GET systems", "scopes": ["zones"], "want": 403},
	{"note": "public reads", "req": "GET systems", "scopes": ["public"], "want": 200},
	{"note": "public writes", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["public"], "want": 200},
	{"note": "public.read reads", "req": "GET zones/zone-1", "scopes": ["public.read"], "want": 200},
	{"note": "public.read does not write", "req": "PUT metadata/zone-1", "scopes": ["public.read"], "want": 403, "msg": "missing scope: metadata.write or public.write"},
	{"note": "public.write writes", "req": "PUT metadata/zone-1", "scopes": ["public.write"], "want": 200},
	{"note": "public.write does not read", "req": "GET zones/zone-1", "scopes": ["public.write"], "want": 403},
	{"note": "public does not lift a gate", "req": "DELETE systems/sys-1", "scopes": ["public"], "want": 403, "msg": "requires admin permissions"},
	{"note": "empty scope list reads nothing", "req": "GET systems", "scopes": [], "want": 403, "msg": "missing scope: systems.read or public.read"},
	{"note": "empty scope list writes nothing", "req": "POST systems/sys-1/Display_1/power_on", "scopes": [], "want": 403},
	{"note": "empty scope list may inspect itself", "req": "GET api_keys/inspect", "scopes": [], "want": 200},
]

test_scopes[c.note] if {
	some c in scope_cases
	ok(c)
}

scope_syntax_cases := [
	{"note": "uppercase suffix reads", "req": "GET systems", "scopes": ["systems.READ"], "want": 200},
	{"note": "mixed-case suffix writes", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["systems.Write"], "want": 200},
	{"note": "uppercase suffix is still only read", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["systems.READ"], "want": 403},
	{"note": "uppercase PUBLIC.read is public", "req": "GET systems", "scopes": ["public.READ"], "want": 200},
	{"note": "uppercase resource is another resource", "req": "GET systems", "scopes": ["SYSTEMS.read"], "want": 403},
	{"note": "uppercase bare Public is not public", "req": "GET systems", "scopes": ["Public"], "want": 403},
	{"note": "malformed: three parts", "req": "GET systems", "scopes": ["systems.read.write"], "want": 403},
	{"note": "malformed: unknown suffix", "req": "GET systems", "scopes": ["systems.admin"], "want": 403},
	{"note": "malformed: empty suffix", "req": "GET systems", "scopes": ["systems."], "want": 403},
	{"note": "malformed: public.all", "req": "GET systems", "scopes": ["public.all"], "want": 403},
	{"note": "malformed beside a good scope", "req": "GET systems", "scopes": ["systems.read.x", "systems.read"], "want": 200},
]

test_scope_syntax[c.note] if {
	some c in scope_syntax_cases
	ok(c)
}

control_cases := [
	{"note": "control.read opens types", "req": "GET systems/sys-1/types", "scopes": ["control.read"], "want": 200},
	{"note": "systems.read opens types", "req": "GET systems/sys-1/types", "scopes": ["systems.read"], "want": 200},
	{"note": "control.write does not open types", "req": "GET systems/sys-1/types", "scopes": ["control.write"], "want": 403, "msg": "missing scope: control.read or systems.read or public.read"},
	{"note": "control.read opens functions for support", "req": "GET systems/sys-1/functions/Display_1", "scopes": ["control.read"], "perm": "support", "want": 200},
	{"note": "zones.read does not open functions", "req": "GET systems/sys-1/functions/Display_1", "scopes": ["zones.read"], "perm": "support", "want": 403},
	{"note": "systems.read opens state for support", "req": "GET systems/sys-1/Display_1", "scopes": ["systems.read"], "perm": "support", "want": 200, "route": {"resource": "control", "access": "read", "gate": "support"}},
	{"note": "control.read opens a state key for support", "req": "GET systems/sys-1/Display_1/power", "scopes": ["control.read"], "perm": "support", "want": 200},
	{"note": "control.write does not read state", "req": "GET systems/sys-1/Display_1/power", "scopes": ["control.write"], "perm": "support", "want": 403},
	{"note": "control.write executes", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["control.write"], "want": 200},
	{"note": "control.read does not execute", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["control.read"], "want": 403},
	{"note": "control.write opens the websocket", "req": "GET systems/control", "proto": "websocket", "scopes": ["control.write"], "want": 200},
	{"note": "systems.write opens the websocket", "req": "GET systems/control", "proto": "websocket", "scopes": ["systems.write"], "want": 200},
	{"note": "systems.read does not open the websocket", "req": "GET systems/control", "proto": "websocket", "scopes": ["systems.read"], "want": 403, "msg": "missing scope: control.write or systems.write or public.write"},
	{"note": "the websocket route is write over plain http too", "req": "GET systems/control", "scopes": ["control.read"], "want": 403},
]

test_control[c.note] if {
	some c in control_cases
	ok(c)
}

# The PlaceOS application keys: the booking panel key (users.read, systems.read, control,
# zones.read, metadata.read; a plain user) and the map kiosk key (public.read) on reads,
# writes, control routes, admin routes and the staff API. input_for (helpers_test.rego) builds
# each row's input.
package keyauthz_test

booking_panel_cases := [
	{"note": "list systems", "req": "GET systems", "scopes": panel, "want": 200},
	{"note": "show system", "req": "GET systems/sys-1", "scopes": panel, "want": 200},
	{"note": "system zones need admin", "req": "GET systems/sys-1/zones", "scopes": panel, "want": 403, "msg": "requires admin permissions"},
	{"note": "create system needs systems.write", "req": "POST systems", "scopes": panel, "want": 403, "msg": "missing scope: systems.write or public.write"},
	{"note": "update system needs systems.write", "req": "PATCH systems/sys-1", "scopes": panel, "want": 403},
	{"note": "list users", "req": "GET users", "scopes": panel, "want": 200},
	{"note": "show user", "req": "GET users/user-2", "scopes": panel, "want": 200},
	{"note": "current user", "req": "GET users/current", "scopes": panel, "want": 200, "msg": "authenticated route"},
	{"note": "update self needs users.write", "req": "PATCH users/user-1", "scopes": panel, "want": 403, "msg": "missing scope: users.write or public.write"},
	{"note": "list zones", "req": "GET zones", "scopes": panel, "want": 200},
	{"note": "create zone needs zones.write", "req": "POST zones", "scopes": panel, "want": 403},
	{"note": "read metadata", "req": "GET metadata/zone-1", "scopes": panel, "want": 200},
	{"note": "metadata children", "req": "GET metadata/zone-1/children", "scopes": panel, "want": 200},
	{"note": "write metadata needs metadata.write", "req": "PUT metadata/zone-1", "scopes": panel, "want": 403},
]

test_booking_panel[c.note] if {
	some c in booking_panel_cases
	ok(c)
}

booking_panel_control_cases := [
	{"note": "module types", "req": "GET systems/sys-1/types", "scopes": panel, "want": 200},
	{"note": "function list needs support", "req": "GET systems/sys-1/functions/Display_1", "scopes": panel, "want": 403, "msg": "requires support permissions"},
	{"note": "module state needs support", "req": "GET systems/sys-1/Display_1", "scopes": panel, "want": 403, "msg": "requires support permissions"},
	{"note": "state lookup needs support", "req": "GET systems/sys-1/Display_1/power", "scopes": panel, "want": 403},
	{"note": "execute", "req": "POST systems/sys-1/Display_1/power_on", "scopes": panel, "want": 200},
	{"note": "control websocket", "req": "GET systems/control", "scopes": panel, "proto": "websocket", "want": 200, "route": {"resource": "control", "access": "write", "gate": "none"}},
	{"note": "control websocket, key in the URL", "req": "GET systems/control", "scopes": panel, "proto": "websocket", "source": "query", "want": 200},
]

test_booking_panel_control[c.note] if {
	some c in booking_panel_control_cases
	ok(c)
}

booking_panel_admin_cases := [
	{"note": "list api keys needs api_keys", "req": "GET api_keys", "scopes": panel, "want": 403, "msg": "missing scope: api_keys.read or public.read"},
	{"note": "delete api key needs api_keys", "req": "DELETE api_keys/k1", "scopes": panel, "want": 403},
	{"note": "inspect own key", "req": "GET api_keys/inspect", "scopes": panel, "want": 200},
	{"note": "staff read needs public", "req": "GET /api/staff/v1/bookings", "scopes": panel, "want": 403, "msg": "missing scope: public.read"},
	{"note": "staff write needs public", "req": "POST /api/staff/v1/bookings", "scopes": panel, "want": 403, "msg": "missing scope: public.write"},
	{"note": "drivers need drivers", "req": "GET drivers", "scopes": panel, "want": 403},
	{"note": "signal needs root", "req": "POST signal?channel=/placeos/sys-1/x", "scopes": panel, "want": 403},
	{"note": "unlisted route needs public", "req": "GET webrtc/rooms", "scopes": panel, "want": 403, "msg": "missing scope: public.read"},
]

test_booking_panel_admin_and_staff[c.note] if {
	some c in booking_panel_admin_cases
	ok(c)
}

map_kiosk_cases := [
	{"note": "list systems", "req": "GET systems", "scopes": kiosk, "want": 200},
	{"note": "show system", "req": "GET systems/sys-1", "scopes": kiosk, "want": 200},
	{"note": "system zones need admin", "req": "GET systems/sys-1/zones", "scopes": kiosk, "want": 403, "msg": "requires admin permissions"},
	{"note": "create system is a write", "req": "POST systems", "scopes": kiosk, "want": 403, "msg": "missing scope: systems.write or public.write"},
	{"note": "list users", "req": "GET users", "scopes": kiosk, "want": 200},
	{"note": "update self is a write", "req": "PATCH users/user-1", "scopes": kiosk, "want": 403},
	{"note": "list zones", "req": "GET zones", "scopes": kiosk, "want": 200},
	{"note": "delete zone is a write", "req": "DELETE zones/zone-1", "scopes": kiosk, "want": 403},
	{"note": "read metadata", "req": "GET metadata/zone-1", "scopes": kiosk, "want": 200},
	{"note": "write metadata is a write", "req": "DELETE metadata/zone-1", "scopes": kiosk, "want": 403},
]

test_map_kiosk[c.note] if {
	some c in map_kiosk_cases
	ok(c)
}

map_kiosk_control_cases := [
	{"note": "module types", "req": "GET systems/sys-1/types", "scopes": kiosk, "want": 200},
	{"note": "function list needs support", "req": "GET systems/sys-1/functions/Display_1", "scopes": kiosk, "want": 403, "msg": "requires support permissions"},
	{"note": "state lookup needs support", "req": "GET systems/sys-1/Display_1/power", "scopes": kiosk, "want": 403},
	{"note": "execute is a write", "req": "POST systems/sys-1/Display_1/power_on", "scopes": kiosk, "want": 403, "msg": "missing scope: control.write or systems.write or public.write"},
	{"note": "control websocket is a write", "req": "GET systems/control", "scopes": kiosk, "proto": "websocket", "want": 403},
]

test_map_kiosk_control[c.note] if {
	some c in map_kiosk_control_cases
	ok(c)
}

map_kiosk_admin_cases := [
	{"note": "list drivers", "req": "GET drivers", "scopes": kiosk, "want": 200},
	{"note": "list api keys: public does not lift the admin gate", "req": "GET api_keys", "scopes": kiosk, "want": 403, "msg": "requires admin permissions"},
	{"note": "create api key is a write", "req": "POST api_keys", "scopes": kiosk, "want": 403, "msg": "missing scope: api_keys.write or public.write"},
	{"note": "inspect own key", "req": "GET api_keys/inspect", "scopes": kiosk, "want": 200},
	{"note": "staff read", "req": "GET /api/staff/v1/bookings?period_start=1", "scopes": kiosk, "want": 200},
	{"note": "staff create is a write", "req": "POST /api/staff/v1/bookings", "scopes": kiosk, "want": 403},
	{"note": "staff HEAD is a read, as its GET", "req": "HEAD /api/staff/v1/bookings", "scopes": kiosk, "want": 200},
	{"note": "HEAD of api keys is its GET: the admin gate holds", "req": "HEAD api_keys", "scopes": kiosk, "want": 403, "msg": "requires admin permissions"},
	{"note": "unlisted GET", "req": "GET webrtc/rooms", "scopes": kiosk, "want": 200},
	{"note": "unlisted DELETE", "req": "DELETE webrtc/rooms/r1", "scopes": kiosk, "want": 403, "msg": "missing scope: public.write"},
	{"note": "signal is a write", "req": "POST signal?channel=/placeos/guest/x", "scopes": kiosk, "want": 403},
]

test_map_kiosk_admin_and_staff[c.note] if {
	some c in map_kiosk_admin_cases
	ok(c)
}

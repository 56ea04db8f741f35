# The guest scope (docs/policy-contract.md#guest): the bare `guest` scope opens only the routes
# the table marks guest, only for ids in its user's groups; `guest.read` is not the guest scope;
# POST /signal lets a guest publish only on channels containing /guest/.
package keyauthz_test

guest_cases := [
	{"note": "show system in groups", "req": "GET systems/sys-1", "scopes": ["guest"], "groups": ["sys-1"], "want": 200},
	{"note": "show system among several groups", "req": "GET systems/sys-1", "scopes": ["guest"], "groups": ["zone-1", "sys-1"], "want": 200},
	{"note": "show system not in groups", "req": "GET systems/sys-2", "scopes": ["guest"], "groups": ["sys-1"], "want": 403, "msg": "guest access denied: the request is outside the guest's roles"},
	{"note": "show system without groups", "req": "GET systems/sys-1", "scopes": ["guest"], "want": 403},
	{"note": "guest.read is not guest", "req": "GET systems/sys-1", "scopes": ["guest.read"], "groups": ["sys-1"], "want": 403, "msg": "missing scope: systems.read or public.read"},
	{"note": "guest.write is not guest", "req": "POST signal?channel=/placeos/guest/x", "scopes": ["guest.write"], "want": 403},
	{"note": "list systems is not a guest route", "req": "GET systems", "scopes": ["guest"], "groups": ["sys-1"], "want": 403, "msg": "missing scope: systems.read or public.read"},
	{"note": "update system is not a guest route", "req": "PATCH systems/sys-1", "scopes": ["guest"], "groups": ["sys-1"], "want": 403},
	{"note": "execute is not a guest route", "req": "POST systems/sys-1/Display_1/power_on", "scopes": ["guest"], "groups": ["sys-1"], "want": 403},
	{"note": "system zones: guest passes, the admin gate does not", "req": "GET systems/sys-1/zones", "scopes": ["guest"], "groups": ["sys-1"], "want": 403, "msg": "requires admin permissions"},
	{"note": "metadata in groups", "req": "GET metadata/zone-1", "scopes": ["guest"], "groups": ["zone-1"], "want": 200},
	{"note": "metadata children in groups", "req": "GET metadata/zone-1/children", "scopes": ["guest"], "groups": ["zone-1"], "want": 200},
	{"note": "metadata not in groups", "req": "GET metadata/zone-2", "scopes": ["guest"], "groups": ["zone-1"], "want": 403, "msg": "guest access denied: the request is outside the guest's roles"},
	{"note": "metadata children not in groups", "req": "GET metadata/zone-2/children", "scopes": ["guest"], "groups": ["zone-1"], "want": 403},
	{"note": "metadata write is not a guest route", "req": "PUT metadata/zone-1", "scopes": ["guest"], "groups": ["zone-1"], "want": 403},
	{"note": "guest beside systems.read reads any system", "req": "GET systems/sys-2", "scopes": ["guest", "systems.read"], "groups": ["sys-1"], "want": 200},
	{"note": "staff API is not a guest route", "req": "GET /api/staff/v1/events", "scopes": ["guest"], "groups": ["sys-1"], "want": 403},
]

test_guest[c.note] if {
	some c in guest_cases
	ok(c)
}

guest_signal_cases := [
	{"note": "signal on a guest channel", "req": "POST signal?channel=/placeos/guest/x", "scopes": ["guest"], "want": 200},
	{"note": "signal on another channel", "req": "POST signal?channel=/placeos/sys-1/x", "scopes": ["guest"], "want": 403, "msg": "guest access denied: the request is outside the guest's roles"},
	{"note": "signal without a channel", "req": "POST signal", "scopes": ["guest"], "want": 403},
	{"note": "signal with a guest and another channel", "req": "POST signal?channel=/placeos/guest/x&channel=/placeos/sys-1/x", "scopes": ["guest"], "want": 403},
	{"note": "signal with guest in another parameter", "req": "POST signal?channel=/placeos/sys-1/x&topic=/guest/", "scopes": ["guest"], "want": 403},
	{"note": "root.write signals on any channel", "req": "POST signal?channel=/placeos/sys-1/x", "scopes": ["root.write"], "want": 200},
	{"note": "root.read does not signal", "req": "POST signal?channel=/placeos/guest/x", "scopes": ["root.read"], "want": 403, "msg": "missing scope: root.write or public.write"},
	{"note": "public.write signals", "req": "POST signal", "scopes": ["public.write"], "want": 200},
]

test_guest_signal[c.note] if {
	some c in guest_signal_cases
	ok(c)
}

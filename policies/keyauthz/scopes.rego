# METADATA
# title: keyauthz scopes
# description: |
#   What a key's scope list grants. A scope is "resource" (read and write), "resource.read" or
#   "resource.write" (suffix case-insensitive). Entries for one resource add up, so
#   ["systems.read", "systems.write"] grants both (PlaceOS takes only the first; design §9).
package keyauthz.scopes

# allows is true when scopes grant access ("read" or "write") on any of resources, or when
# "public" grants it: public is the wildcard of every scoped route.
allows(scopes, resources, access) if {
	held := {lower(s) | some s in scopes}
	some resource in array.concat(resources, ["public"])
	some granting in [resource, concat(".", [resource, access])]
	granting in held
}

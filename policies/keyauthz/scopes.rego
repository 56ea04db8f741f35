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
	some resource in array.concat(resources, ["public"])
	some s in scopes
	[resource, granted] = parse(s)
	granted in {access, "all"}
}

# parse turns a scope string into [resource, access], access being "read", "write" or "all".
# A malformed scope (three parts, an unknown suffix) is undefined and so grants nothing.
parse(s) := [s, "all"] if not contains(s, ".")

parse(s) := [parts[0], suffix] if {
	parts := split(s, ".")
	count(parts) == 2
	suffix := lower(parts[1])
	suffix in {"read", "write"}
}

# has_bare is true when scopes hold resource with no suffix (PlaceOS compares the whole scope,
# so "guest.read" is not the guest scope).
has_bare(scopes, resource) if resource in scopes

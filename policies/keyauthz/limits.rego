# Per-key limits. The IP allow-list of a key (docs/limits.md): a key with key.allowed_cidrs may
# be used only from an address in one of those networks. The address is request.client_ip,
# which Go takes from the trusted source of each surface (the gateway's own header, or the
# connection); Go writes both in canonical form (IPv4-mapped IPv6 addresses as IPv4). The rate
# limit is not here: it is a token bucket Go keeps after the policy allows.
package keyauthz

# client_not_allowed holds for a key with an allow-list used from an address outside all of its
# networks, or from an address keyauthz does not know (no request.client_ip): a key restricted
# to some networks fails closed. A key without an allow-list stops at the first line.
client_not_allowed if {
	count(input.key.allowed_cidrs) > 0
	not client_in_allowed_network
}

client_in_allowed_network if {
	some cidr in input.key.allowed_cidrs
	net.cidr_contains(cidr, input.request.client_ip)
}

package main

// domainsResource is `keyauthz domains`: domains over /api/engine/v2/domains.
var domainsResource = resource{
	name:    "domains",
	noun:    "domain",
	path:    "/api/engine/v2/domains",
	summary: "list, show, create, update and delete domains over the admin API",
	help: `The caller's key needs the domains scope: support level to read, admin to write. Deleting a
domain deletes its users and their keys.`,
	deleteHelp: "Deleting a domain deletes its users and their keys.\n\n",
	fields: []field{
		{flag: "name", json: "name", usage: "display `name`"},
		{flag: "domain", json: "domain", usage: "the `host` requests for the domain arrive on (unique)"},
		{flag: "description", json: "description", usage: "free text"},
	},
	columns: []column{
		textCol("ID", "id"), textCol("NAME", "name"), textCol("DOMAIN", "domain"),
		shortCol("DESCRIPTION", "description", 40),
	},
	details: []column{
		textCol("ID", "id"), textCol("NAME", "name"), textCol("DOMAIN", "domain"),
		textCol("DESCRIPTION", "description"), timeCol("CREATED", "created_at", "-"),
		timeCol("UPDATED", "updated_at", "-"),
	},
}

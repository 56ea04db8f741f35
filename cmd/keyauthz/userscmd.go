package main

// usersResource is `keyauthz users`: users over /api/engine/v2/users.
var usersResource = resource{
	name:    "users",
	noun:    "user",
	path:    "/api/engine/v2/users",
	summary: "list, show, create, update and delete users over the admin API",
	help: `The caller's key needs the users scope: any level lists its own domain's users, admin level
lists any domain and creates or deletes users, and a user below admin may update only its own
name and email. Deleting a user deletes its keys.`,
	filters: []field{
		{flag: "authority-id", json: "authority_id", usage: "only this domain's users (a domain `id`)"},
	},
	deleteHelp: "Deleting a user deletes its keys.\n\n",
	fields: []field{
		{flag: "authority-id", json: "authority_id", createOnly: true, usage: "the user's domain (a domain `id`)"},
		{flag: "name", json: "name", usage: "the user's `name`"},
		{flag: "email", json: "email", usage: "the user's `address`"},
		{flag: "sys-admin", json: "sys_admin", kind: boolField, usage: "admin level (--sys-admin=false to revoke)"},
		{flag: "support", json: "support", kind: boolField, usage: "support level (--support=false to revoke)"},
		{flag: "groups", json: "groups", kind: listField, usage: "the user's `groups` (roles)"},
	},
	columns: []column{
		textCol("ID", "id"), textCol("DOMAIN", "authority_id"), textCol("NAME", "name"),
		textCol("EMAIL", "email"), textCol("SYS ADMIN", "sys_admin"), textCol("SUPPORT", "support"),
		listCol("GROUPS", "groups"),
	},
	details: []column{
		textCol("ID", "id"), textCol("DOMAIN", "authority_id"), textCol("NAME", "name"),
		textCol("EMAIL", "email"), textCol("SYS ADMIN", "sys_admin"), textCol("SUPPORT", "support"),
		listCol("GROUPS", "groups"), timeCol("CREATED", "created_at", "-"),
		timeCol("UPDATED", "updated_at", "-"),
	},
}

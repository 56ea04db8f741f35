package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// keysResource is `keyauthz keys`: API keys over /api/engine/v2/api_keys.
var keysResource = resource{
	name:    "keys",
	noun:    "API key",
	path:    "/api/engine/v2/api_keys",
	summary: "list, show, create, update, delete and rotate API keys over the admin API",
	help:    "The caller's key needs the api_keys scope and admin level; no key creates a key stronger than itself.",
	filters: []field{
		{flag: "authority-id", json: "authority_id", usage: "only this domain's keys (a domain `id`)"},
		{flag: "q", json: "q", usage: "only keys whose name or description contains this `text`"},
		{flag: "limit", json: "limit", kind: intField, usage: "page size (the API's default 100, at most 10000)"},
		{flag: "offset", json: "offset", kind: intField, usage: "page start"},
	},
	fields: []field{
		{flag: "name", json: "name", usage: "key `name`, unique in its domain"},
		{flag: "description", json: "description", usage: "what the key is for"},
		{flag: "scopes", json: "scopes", kind: listField, usage: "`scopes`, e.g. systems.read,control"},
		{flag: "user-id", json: "user_id", createOnly: true, usage: "the `id` of the user the key acts as"},
		{flag: "permissions", json: "permissions", usage: "`level`: user (the API's default), support, admin or admin_support"},
	},
	extra: keyExtraFlags,
	columns: []column{
		textCol("ID", "id"), textCol("NAME", "name"), listCol("SCOPES", "scopes"),
		textCol("PERMISSIONS", "permissions"), textCol("USER", "user_id"),
		timeCol("EXPIRES", "expires_at", "never"), timeCol("LAST USED", "last_used_at", "never"),
		textCol("STATE", "state"),
	},
	details: []column{
		textCol("ID", "id"), textCol("NAME", "name"), textCol("DESCRIPTION", "description"),
		listCol("SCOPES", "scopes"), textCol("PERMISSIONS", "permissions"), textCol("USER", "user_id"),
		textCol("DOMAIN", "authority_id"), timeCol("CREATED", "created_at", "-"),
		timeCol("UPDATED", "updated_at", "-"), timeCol("EXPIRES", "expires_at", "never"),
		timeCol("LAST USED", "last_used_at", "never"), textCol("STATE", "state"),
		{header: "ROTATED FROM", value: textCol("", "rotated_from").value, omitEmpty: true},
		{header: "REPLACED BY", value: textCol("", "replaced_by").value, omitEmpty: true},
		{header: "ALLOWED CIDRS", value: listCol("", "allowed_cidrs").value, omitEmpty: true},
		rateLimitCol("RATE LIMIT"),
		{header: "API KEY", value: textCol("", "x_api_key").value, omitEmpty: true},
	},
	created: func(c *cli, obj map[string]any) {
		if _, ok := obj["x_api_key"].(string); ok {
			fmt.Fprintln(c.stderr, "keyauthz: store the API key now: this is the only time it is shown, and it cannot be shown again")
		}
	},
}

// keyExtraFlags declares --expires-at and --expires-in, which set expires_at; a created key
// without --scopes has none (an empty list, not null).
func keyExtraFlags(fs *flag.FlagSet, create bool) func(c *cli, body map[string]any) error {
	never := "\"never\" removes the expiry"
	if create {
		never = "\"never\" (the default) for none"
	}
	at := fs.String("expires-at", "", "expire the key at this `time`: RFC 3339, a date (midnight UTC) or Unix seconds; "+never)
	in := fs.Duration("expires-in", 0, "expire the key after this `duration` from now, e.g. 720h")
	limits := keyLimitFlags(fs, create) // keyslimits.go
	return func(c *cli, body map[string]any) error {
		if err := limits(c, body); err != nil {
			return err
		}
		if _, ok := body["scopes"]; create && !ok {
			body["scopes"] = []string{}
		}
		switch {
		case c.given("expires-at") && c.given("expires-in"):
			return usageErrorf(c.name, "--expires-at and --expires-in are exclusive: give one")
		case c.given("expires-in"):
			if *in <= 0 {
				return usageErrorf(c.name, "--expires-in must be positive")
			}
			body["expires_at"] = time.Now().Add(*in).Unix()
		case c.given("expires-at"):
			t, err := parseExpiry(*at)
			if err != nil {
				return usageErrorf(c.name, "--expires-at: %v", err)
			}
			body["expires_at"] = t // nil: JSON null, no expiry
		}
		return nil
	}
}

// parseExpiry reads an RFC 3339 time, a date or Unix seconds as Unix seconds; "never" is nil.
func parseExpiry(s string) (*int64, error) {
	if s == "never" {
		return nil, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &n, nil
	}
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			n := t.Unix()
			return &n, nil
		}
	}
	return nil, fmt.Errorf("%q: want an RFC 3339 time (2030-01-02T15:04:05Z), a date (2030-01-02), Unix seconds or never", s)
}

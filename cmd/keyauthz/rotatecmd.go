package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// keysCommand is `keyauthz keys`: the admin-API commands every resource has, and rotate.
func keysCommand() *command {
	cmd := resourceCommand(keysResource)
	cmd.subs = append(cmd.subs, keysRotateCommand())
	return cmd
}

const rotateHelp = `The new key has the old one's name, description, scopes, permissions, user, limits and
expiry, and is printed once (the API KEY row, or x_api_key in JSON): store it then. The old key
keeps working for --overlap, never past its own expiry, then is refused as expired; move its
clients to the new key meanwhile. A key already replaced cannot be rotated again. The caller
must be able to create the key (no key mints a key stronger than itself).

`

// keysRotateCommand is `keyauthz keys rotate ID [--overlap D]`: POST /api_keys/:id/rotate
// (docs/keys.md#rotation).
func keysRotateCommand() *command {
	r := keysResource
	return &command{
		name: "rotate", summary: "replace an API key by a new one; the old one works on for an overlap",
		args: "API_KEY_ID", nargs: 1, help: rotateHelp + adminHelp,
		flags: func(fs *flag.FlagSet) runFunc {
			a := declareAdminFlags(fs)
			overlap := fs.String("overlap", "24h", "how long the old key keeps working: a `duration` from 0s to 720h (never past its own expiry)")
			return func(ctx context.Context, c *cli, args []string) error {
				// Checked here too, so that a typo is a usage error before any key is read.
				if _, err := keys.ParseOverlap(*overlap); err != nil {
					return usageErrorf(c.name, "--overlap %q: %s", *overlap, keys.ReasonOverlap)
				}
				obj, err := a.call(ctx, c, r, http.MethodPost, r.path+"/"+url.PathEscape(args[0])+"/rotate", nil,
					map[string]any{"overlap": *overlap}, r.details)
				if err != nil {
					return err
				}
				r.created(c, obj)
				fmt.Fprintf(c.stderr, "keyauthz: the old key %s keeps working for %s (never past its own expiry), then is refused\n",
					clean(args[0]), clean(*overlap))
				return nil
			}
		},
	}
}

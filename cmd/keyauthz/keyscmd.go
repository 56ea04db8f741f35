package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const keysUsage = `Usage: keyauthz keys [--url URL] [--key-file FILE] COMMAND

Manage API keys over the admin API (the caller's key needs the api_keys scope and admin level).

Commands:
  create --name N --user-id U [--scopes a,b.read] [--permissions user] [--description D] [--expires-in 24h]
  list [--authority-id ID] [--q TEXT] [--limit N] [--offset N]
  show ID
  delete ID

The caller's key is read from $KEYAUTHZ_API_KEY, else from --key-file (default
./data/bootstrap.key). The server is $KEYAUTHZ_URL, else --url (default http://localhost:8080);
its host must be the key's domain.
`

// runKeys is a small client of the admin API, so that an operator can manage keys without
// writing curl commands. It prints the API's JSON responses.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyauthz keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, keysUsage) }
	base := fs.String("url", cmp.Or(getenv("KEYAUTHZ_URL"), "http://localhost:8080"), "keyauthz base URL")
	keyFile := fs.String("key-file", filepath.Join(".", "data", bootstrapKeyFile), "file holding the caller's API key")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("keys: missing command: %w", errUsage)
	}
	key := getenv("KEYAUTHZ_API_KEY")
	if key == "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("keys: no caller key: set KEYAUTHZ_API_KEY or --key-file (%w)", err)
		}
		key = strings.TrimSpace(string(b))
	}
	c := &adminClient{base: strings.TrimSuffix(*base, "/"), key: key, out: stdout}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "create":
		return c.create(ctx, rest, stderr)
	case "list":
		return c.list(ctx, rest, stderr)
	case "show", "delete":
		if len(rest) != 1 {
			return fmt.Errorf("keys %s: want one key id: %w", cmd, errUsage)
		}
		method := http.MethodGet
		if cmd == "delete" {
			method = http.MethodDelete
		}
		return c.do(ctx, method, "/api/engine/v2/api_keys/"+url.PathEscape(rest[0]), nil)
	default:
		fs.Usage()
		return fmt.Errorf("keys: unknown command %q: %w", cmd, errUsage)
	}
}

type adminClient struct {
	base, key string
	out       io.Writer
}

func (c *adminClient) create(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyauthz keys create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "key name (unique in its domain)")
	description := fs.String("description", "", "what the key is for")
	userID := fs.String("user-id", "", "the user the key emulates")
	scopes := fs.String("scopes", "", "comma-separated scopes, e.g. systems.read,control")
	permissions := fs.String("permissions", "user", "user, support, admin or admin_support")
	expiresIn := fs.Duration("expires-in", 0, "expire the key after this long (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := map[string]any{
		"name": *name, "description": *description, "user_id": *userID,
		"permissions": *permissions, "scopes": splitList(*scopes),
	}
	if *expiresIn > 0 {
		body["expires_at"] = time.Now().Add(*expiresIn).Unix()
	}
	return c.do(ctx, http.MethodPost, "/api/engine/v2/api_keys", body)
}

func (c *adminClient) list(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyauthz keys list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	authority := fs.String("authority-id", "", "only this domain's keys")
	q := fs.String("q", "", "name or description contains")
	limit := fs.Int("limit", 100, "page size")
	offset := fs.Int("offset", 0, "page start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	v := url.Values{}
	if *authority != "" {
		v.Set("authority_id", *authority)
	}
	if *q != "" {
		v.Set("q", *q)
	}
	v.Set("limit", fmt.Sprint(*limit))
	v.Set("offset", fmt.Sprint(*offset))
	return c.do(ctx, http.MethodGet, "/api/engine/v2/api_keys?"+v.Encode(), nil)
}

// do sends one admin request and prints the response body; a status of 400 or more is an error
// carrying the API's message.
func (c *adminClient) do(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", c.key)
	if body != nil {
		// The admin API refuses a write whose body is not declared JSON (415, design §3).
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(out)))
	}
	if len(out) == 0 {
		fmt.Fprintf(c.out, "%s\n", resp.Status)
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	_, err = fmt.Fprintf(c.out, "%s\n", out)
	return err
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

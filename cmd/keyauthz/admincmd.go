package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// The admin-API commands (keys, domains, users) share one shape: list, show, create, update and
// delete, each with --url, --key-file and --output, built by resourceCommand from a resource.

// resource describes one collection of the admin API (docs/http-api.md#admin-api).
type resource struct {
	name    string // the command: "keys"
	noun    string // "API key"
	path    string // "/api/engine/v2/api_keys"
	summary string
	help    string // who may call it
	// deleteHelp says what a delete takes with it (a domain's users and keys), ending in "\n\n".
	deleteHelp string
	filters    []field   // list's query parameters
	fields     []field   // create's and update's body fields
	columns    []column  // list's table
	details    []column  // show's, create's and update's table
	extra      extraFunc // resource-specific flags of create and update (keys: expiry)
	// created runs after a create was printed (keys: the warning that the key is shown once).
	created func(c *cli, obj map[string]any)
}

// extraFunc declares flags on fs and returns the func that adds them to a create (create
// true) or update body.
type extraFunc func(fs *flag.FlagSet, create bool) func(c *cli, body map[string]any) error

// field is a flag that becomes a JSON body field or a query parameter of the same meaning.
type field struct {
	flag, json, usage string
	kind              fieldKind
	createOnly        bool // the API cannot change it (user_id, authority_id)
}

type fieldKind int

const (
	textField fieldKind = iota
	listField           // comma-separated on the command line, a JSON array in the body
	boolField
	intField
)

// declareFields declares one flag per field on fs and returns the func that collects the
// fields whose flag was given (on the command line or in the environment).
func declareFields(fs *flag.FlagSet, fields []field, create bool) func(c *cli) map[string]any {
	values := map[string]any{}
	for _, f := range fields {
		if f.createOnly && !create {
			continue
		}
		switch f.kind {
		case textField:
			values[f.flag] = fs.String(f.flag, "", f.usage)
		case listField:
			values[f.flag] = fs.String(f.flag, "", f.usage+" (comma-separated; \"\" for none)")
		case boolField:
			values[f.flag] = fs.Bool(f.flag, false, f.usage)
		case intField:
			values[f.flag] = fs.Int(f.flag, 0, f.usage)
		}
	}
	return func(c *cli) map[string]any {
		out := map[string]any{}
		for _, f := range fields {
			p, ok := values[f.flag]
			if !ok || !c.given(f.flag) {
				continue
			}
			switch p := p.(type) {
			case *string:
				if f.kind == listField {
					out[f.json] = splitList(*p)
				} else {
					out[f.json] = *p
				}
			case *bool:
				out[f.json] = *p
			case *int:
				out[f.json] = *p
			}
		}
		return out
	}
}

// resourceCommand builds the command group of r: list, show, create, update, delete.
func resourceCommand(r resource) *command {
	idArg := strings.ToUpper(strings.ReplaceAll(r.noun, " ", "_")) + "_ID"
	return &command{
		name:    r.name,
		summary: r.summary,
		help:    r.help + "\n\n" + adminHelp,
		shared:  func(fs *flag.FlagSet) { declareAdminFlags(fs) },
		subs: []*command{
			{
				name: "list", summary: "list " + r.noun + "s", help: listHelp(r) + adminHelp,
				flags: func(fs *flag.FlagSet) runFunc {
					a := declareAdminFlags(fs)
					query := declareFields(fs, r.filters, true)
					return func(ctx context.Context, c *cli, _ []string) error {
						q := url.Values{}
						for k, v := range query(c) {
							q.Set(k, fmt.Sprint(v))
						}
						_, err := a.call(ctx, c, r, http.MethodGet, r.path, q, nil, r.columns)
						return err
					}
				},
			},
			{
				name: "show", summary: "show one " + r.noun, args: idArg, nargs: 1, help: adminHelp,
				flags: func(fs *flag.FlagSet) runFunc {
					a := declareAdminFlags(fs)
					return func(ctx context.Context, c *cli, args []string) error {
						_, err := a.call(ctx, c, r, http.MethodGet, r.path+"/"+url.PathEscape(args[0]), nil, nil, r.details)
						return err
					}
				},
			},
			{
				name: "create", summary: "create " + article(r.noun) + " " + r.noun, help: createHelp(r) + adminHelp,
				flags: func(fs *flag.FlagSet) runFunc { return writeFlags(fs, r, true) },
			},
			{
				name: "update", summary: "change the given fields of " + article(r.noun) + " " + r.noun, args: idArg, nargs: 1,
				help:  "Only the fields whose flags are given, on the command line or in the environment, change.\n\n" + adminHelp,
				flags: func(fs *flag.FlagSet) runFunc { return writeFlags(fs, r, false) },
			},
			{
				name: "delete", summary: "delete " + article(r.noun) + " " + r.noun, args: idArg, nargs: 1, help: r.deleteHelp + adminHelp,
				flags: func(fs *flag.FlagSet) runFunc {
					a := declareAdminFlags(fs)
					return func(ctx context.Context, c *cli, args []string) error {
						ac, err := a.client(c)
						if err != nil {
							return err
						}
						if _, _, err := ac.do(ctx, http.MethodDelete, r.path+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
							return err
						}
						if a.output == "table" {
							fmt.Fprintf(c.stdout, "deleted %s %s\n", r.noun, clean(args[0]))
						}
						return nil // json: the API answers 202 with no body
					}
				},
			},
		},
	}
}

// writeFlags declares the flags of create (create true) or update and returns its run func.
func writeFlags(fs *flag.FlagSet, r resource, create bool) runFunc {
	a := declareAdminFlags(fs)
	body := declareFields(fs, r.fields, create)
	var extra func(*cli, map[string]any) error
	if r.extra != nil {
		extra = r.extra(fs, create)
	}
	return func(ctx context.Context, c *cli, args []string) error {
		b := body(c)
		if extra != nil {
			if err := extra(c, b); err != nil {
				return err
			}
		}
		if create {
			obj, err := a.call(ctx, c, r, http.MethodPost, r.path, nil, b, r.details)
			if err == nil && r.created != nil {
				r.created(c, obj)
			}
			return err
		}
		if len(b) == 0 {
			return usageErrorf(c.name, "nothing to change: give at least one field's flag")
		}
		_, err := a.call(ctx, c, r, http.MethodPatch, r.path+"/"+url.PathEscape(args[0]), nil, b, r.details)
		return err
	}
}

func listHelp(r resource) string {
	if len(r.filters) == 0 {
		return "The API returns the whole list.\n\n"
	}
	return ""
}

func createHelp(r resource) string {
	if r.created != nil {
		return "The new key is printed once (the API KEY row, or x_api_key in JSON): store it then, it cannot\nbe shown again.\n\n"
	}
	return ""
}

func article(noun string) string {
	if strings.ContainsRune("AEIOU", rune(noun[0])) {
		return "an"
	}
	return "a"
}

const adminHelp = `The caller's key is read from the file --key-file (default ./data/bootstrap.key, the
bootstrap admin key of a local server) or, when --key-file is not on the command line, from
$KEYAUTHZ_API_KEY; setting both KEYAUTHZ_API_KEY and KEYAUTHZ_KEY_FILE is an error; a key file
that group or others may read is used with a warning (chmod 600 it). The host of --url must be
the key's domain (the bootstrap domain is localhost). The key travels in the clear over http://,
so an http:// --url must name a loopback host (localhost, 127.0.0.0/8, ::1): use https:// for
any other, or --insecure-http to send the key in the clear anyway.`

// adminFlags are the flags every admin-API command has.
type adminFlags struct {
	url, keyFile, output string
	insecureHTTP         bool
}

func declareAdminFlags(fs *flag.FlagSet) *adminFlags {
	a := &adminFlags{}
	fs.StringVar(&a.url, "url", "http://localhost:8080", "keyauthz base `URL`; its host must be the caller key's domain")
	fs.StringVar(&a.keyFile, "key-file", "./data/"+bootstrapKeyFile, "`file` holding the caller's API key; $KEYAUTHZ_API_KEY may hold the key itself")
	fs.Var(newChoice(&a.output, "table", "table", "json"), "output", "output format: `table|json` (json: the API's JSON as it is)")
	fs.BoolVar(&a.insecureHTTP, "insecure-http", false, "allow an http:// --url whose host is not loopback: the key is sent in the clear")
	return a
}

// adminClient is a client of the admin API with one caller key.
type adminClient struct {
	base string
	key  string
	http *http.Client
}

// client checks --url and reads the caller's key: the one place a key is read.
func (a *adminFlags) client(c *cli) (*adminClient, error) {
	u, err := url.Parse(a.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf(c.name, "--url %q: want http://HOST[:PORT] or https://...", a.url)
	}
	if u.Scheme == "http" && !a.insecureHTTP && !isLoopbackHost(u.Hostname()) {
		return nil, usageErrorf(c.name, "--url %q: http:// would send the API key in the clear to %s; use https://, "+
			"or --insecure-http (KEYAUTHZ_INSECURE_HTTP=true) if that is really wanted", a.url, u.Hostname())
	}
	key, err := a.callerKey(c)
	if err != nil {
		return nil, err
	}
	return &adminClient{
		base: strings.TrimSuffix(u.String(), "/"),
		key:  key,
		http: &http.Client{
			Timeout: time.Minute,
			// The admin API never redirects; following one would send X-API-Key elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// isLoopbackHost reports whether host (a URL's Hostname) is this machine: localhost, an address
// of 127.0.0.0/8 or ::1. Only there may the key travel over plain http.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// callerKey is --key-file's content if that flag is on the command line, else
// $KEYAUTHZ_API_KEY, else the content of KEYAUTHZ_KEY_FILE or the default file.
func (a *adminFlags) callerKey(c *cli) (string, error) {
	envKey := strings.TrimSpace(c.getenv("KEYAUTHZ_API_KEY"))
	if !c.cmdline["key-file"] && envKey != "" {
		if c.given("key-file") {
			return "", usageErrorf(c.name, "KEYAUTHZ_API_KEY and KEYAUTHZ_KEY_FILE are both set: unset one")
		}
		return envKey, nil
	}
	f, err := os.Open(a.keyFile)
	if err != nil {
		return "", fmt.Errorf("no caller key: set KEYAUTHZ_API_KEY or --key-file (%w)", err)
	}
	defer f.Close()
	// As ssh does for a private key: a key that others can read is no longer only the caller's.
	if fi, err := f.Stat(); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(c.stderr, "warning: the key file %q is accessible by group or others (mode %04o): run chmod 600 on it\n",
			a.keyFile, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading the caller key: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("no caller key: %s is empty", a.keyFile)
	}
	return key, nil
}

// apiError is an admin-API answer of 400 or more, with the API's message and, for a 422, every
// failed field.
type apiError struct {
	method, path string
	code         int
	message      string
	failures     []apiFailure
}

type apiFailure struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	// The code and Go's own text for it, never the server's status line: that is the server's
	// text, and could hold terminal escapes.
	fmt.Fprintf(&b, "%s %s: %d", e.method, e.path, e.code)
	if text := http.StatusText(e.code); text != "" {
		b.WriteString(" " + text)
	}
	if e.message != "" {
		b.WriteString(": " + clean(e.message))
	}
	for _, f := range e.failures {
		fmt.Fprintf(&b, "\n  %s: %s", clean(f.Field), clean(f.Reason))
	}
	if e.code == http.StatusUnauthorized {
		b.WriteString("\n  (check the caller's key, from KEYAUTHZ_API_KEY or --key-file, and that --url's host is the key's domain)")
	}
	return b.String()
}

// do sends one admin request; an answer of 400 or more is an *apiError.
func (ac *adminClient) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	target := ac.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-API-Key", ac.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		// The admin API refuses a write whose body is not declared JSON (415).
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ac.http.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // the method and URL are said once, here
		}
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 || (resp.StatusCode >= 300 && resp.StatusCode < 400) {
		e := &apiError{method: method, path: path, code: resp.StatusCode}
		var msg struct {
			Error    string       `json:"error"`
			Failures []apiFailure `json:"failures"`
		}
		if json.Unmarshal(out, &msg) == nil && msg.Error != "" {
			e.message, e.failures = msg.Error, msg.Failures
		} else {
			e.message = string(bytes.TrimSpace(out[:min(len(out), 512)]))
		}
		return resp, out, e
	}
	return resp, out, nil
}

// call sends one request and prints the answer: the API's JSON with --output json, else a
// table of cols (one row per record for a list, one line per column for a record). It returns
// the record (nil for a list).
func (a *adminFlags) call(ctx context.Context, c *cli, r resource, method, path string, query url.Values, body any, cols []column) (map[string]any, error) {
	ac, err := a.client(c)
	if err != nil {
		return nil, err
	}
	resp, out, err := ac.do(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s %s: the answer is not JSON: %w", method, path, err)
	}
	// One JSON value and nothing after it: trailing bytes would reach the terminal with --output
	// json. (dec.More is not enough: it is false before a stray '}' or ']'.)
	if rest := bytes.TrimSpace(out[dec.InputOffset():]); len(rest) > 0 {
		return nil, fmt.Errorf("%s %s: the answer is not one JSON value: %d bytes follow it", method, path, len(rest))
	}
	obj, _ := v.(map[string]any)
	if a.output == "json" {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, out, "", "  "); err != nil {
			return nil, fmt.Errorf("%s %s: the answer is not JSON: %w", method, path, err)
		}
		pretty.WriteByte('\n')
		_, err = c.stdout.Write(escapeJSONForTerminal(pretty.Bytes()))
		return obj, err
	}
	switch v := v.(type) {
	case []any:
		printTable(c.stdout, cols, v)
		offset, _ := strconv.Atoi(query.Get("offset"))
		if total, err := strconv.Atoi(resp.Header.Get("X-Total-Count")); err == nil && offset+len(v) < total {
			fmt.Fprintf(c.stderr, "showing %d-%d of %d %ss; --offset %d for more\n", offset+1, offset+len(v), total, r.noun, offset+len(v))
		}
	case map[string]any:
		printRecord(c.stdout, cols, v)
	default:
		return nil, fmt.Errorf("%s %s: unexpected answer %s", method, path, clean(string(out)))
	}
	return obj, nil
}

// column is one column of a table: its header and how to show a record's value.
type column struct {
	header string
	value  func(obj map[string]any) string
	// omitEmpty leaves the row out of a record's table when the value is empty (x_api_key).
	omitEmpty bool
}

func printTable(w io.Writer, cols []column, rows []any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, col := range cols {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, col.header)
	}
	fmt.Fprintln(tw)
	for _, row := range rows {
		obj, _ := row.(map[string]any)
		for i, col := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, col.value(obj))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}

func printRecord(w io.Writer, cols []column, obj map[string]any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, col := range cols {
		v := col.value(obj)
		if col.omitEmpty && (v == "" || v == "-") {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", col.header, v)
	}
	_ = tw.Flush()
}

// Column values. Every value from the API goes through clean: a name may hold anything,
// terminal escapes included.

func textCol(header, name string) column {
	return column{header: header, value: func(obj map[string]any) string {
		switch v := obj[name].(type) {
		case nil:
			return "-"
		case string:
			return clean(v)
		default:
			return clean(fmt.Sprint(v))
		}
	}}
}

// shortCol is textCol cut to n characters, for free text in a list.
func shortCol(header, name string, n int) column {
	c := textCol(header, name)
	full := c.value
	c.value = func(obj map[string]any) string {
		s := []rune(full(obj))
		if len(s) > n {
			return string(s[:n-1]) + "…"
		}
		return string(s)
	}
	return c
}

func listCol(header, name string) column {
	return column{header: header, value: func(obj map[string]any) string {
		list, _ := obj[name].([]any)
		if len(list) == 0 {
			return "-"
		}
		parts := make([]string, len(list))
		for i, v := range list {
			parts[i] = fmt.Sprint(v)
		}
		return clean(strings.Join(parts, ","))
	}}
}

// timeCol shows Unix seconds as UTC time; null as none.
func timeCol(header, name, none string) column {
	return column{header: header, value: func(obj map[string]any) string {
		n, ok := obj[name].(json.Number)
		if !ok {
			return none
		}
		sec, err := n.Int64()
		if err != nil {
			return clean(n.String())
		}
		return time.Unix(sec, 0).UTC().Format("2006-01-02 15:04:05Z")
	}}
}

// escapeJSONForTerminal escapes, in valid JSON, what encoding/json leaves raw in strings but a
// terminal may act on: C1 controls (U+0080-U+009F, U+009B is CSI), DEL, bidirectional controls,
// U+2028/U+2029, and bytes that are not UTF-8 (shown as U+FFFD). In valid JSON these occur only
// inside strings, where \uXXXX means the same character, so the output is the same JSON.
func escapeJSONForTerminal(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		bad := r == utf8.RuneError && size == 1
		if !bad && r != 0x7f && !(r >= 0x80 && r <= 0x9f) && !unicode.Is(unicode.Bidi_Control, r) && r != '\u2028' && r != '\u2029' {
			if out != nil {
				out = append(out, b[i:i+size]...)
			}
			i += size
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(b)+16), b[:i]...)
		}
		if bad {
			r = utf8.RuneError
		}
		out = fmt.Appendf(out, `\u%04x`, r)
		i += size
	}
	if out == nil {
		return b
	}
	return out
}

// clean makes text from the API safe to print on a terminal: a value holding control or
// bidirectional-override characters is shown quoted, with them escaped.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == unicode.ReplacementChar
	}) >= 0 {
		return strconv.QuoteToGraphic(s)
	}
	return s
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

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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/keyauthz/keyauthz/internal/placeos"
)

// `keyauthz import placeos FILE`: a PlaceOS export posted as it is to the admin API's import
// route (docs/import.md), so that the import is audited, works on every node of a cluster and
// is judged by the minting cap like any other admin write.

const importPath = "/api/engine/v2/import/placeos"

// maxImportBytes is the admin API's body limit (internal/server maxBodyBytes): a larger file
// is refused here, before it is sent.
const maxImportBytes = 1 << 20

var importCommand = &command{
	name:    "import",
	summary: "import keys from another system over the admin API",
	subs: []*command{{
		name:    "placeos",
		summary: "import PlaceOS authority, user and api_key rows: keys keep their ids and work unchanged",
		args:    "FILE",
		nargs:   1,
		help:    importHelp + "\n\n" + adminHelp,
		flags:   importPlaceOSFlags,
	}},
}

const importHelp = `FILE holds rows of PlaceOS's authority, user and api_key tables as its database holds them:
JSON lines (one row_to_json object per line; .jsonl or .ndjson) or CSV with a header row per
table (psql's \copy ... CSV HEADER; .csv). Other names are told by their first character.
Everything is imported or nothing: bad rows are listed with their line, rows that conflict with
stored records are listed, and nothing is written then. Rows already imported are left
unchanged, so importing the same file again changes nothing; but a row whose id was deleted in
keyauthz (a revoked key, a deleted user or domain) is a conflict: no import brings it back
(docs/import.md#deleted-records). --dry-run reports what the import
would create, leave unchanged or find in conflict, and writes nothing. The caller's key must
hold api_keys (and domains.write, users.write for authority and user rows), admin level, and
be able to mint every key of the file. One import is one transaction, which bounds it: about
740 keys on Badger, 30 on etcd, and 1 MiB of file; split a larger export into parts
(docs/import.md#limits).`

func importPlaceOSFlags(fs *flag.FlagSet) runFunc {
	a := declareAdminFlags(fs)
	dryRun := fs.Bool("dry-run", false, "report what the import would do, and write nothing")
	return func(ctx context.Context, c *cli, args []string) error {
		data, err := readImportFile(args[0])
		if err != nil {
			return err
		}
		ac, err := a.client(c)
		if err != nil {
			return err
		}
		q := url.Values{}
		if *dryRun {
			q.Set("dry_run", "true")
		}
		status, out, err := ac.postRaw(ctx, importPath, q, importMediaType(args[0], data), data)
		if err != nil {
			return err
		}
		var rep importReport
		if status == http.StatusOK || status == http.StatusConflict {
			if json.Unmarshal(out, &rep) != nil {
				return fmt.Errorf("POST %s: the answer is not an import report", importPath)
			}
		}
		if a.output == "json" {
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "  "); err == nil {
				pretty.WriteByte('\n')
				_, _ = c.stdout.Write(escapeJSONForTerminal(pretty.Bytes()))
			}
		} else if status == http.StatusOK || status == http.StatusConflict {
			rep.print(c.stdout)
		}
		switch {
		case status == http.StatusConflict:
			return &apiError{method: http.MethodPost, path: importPath, code: status, message: rep.Error}
		case status != http.StatusOK:
			return apiErrorFrom(http.MethodPost, importPath, status, out)
		case rep.Conflicts.total() > 0:
			return fmt.Errorf("dry run: %d rows conflict with stored records: the import would write nothing", rep.Conflicts.total())
		}
		return nil
	}
}

// readImportFile reads FILE ("-": standard input is not offered: the format is told from the
// name or the content, and the size must be known), refusing one over the API's limit.
func readImportFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxImportBytes {
		return nil, fmt.Errorf("%s is larger than the 1 MiB the API takes in one import: split it (docs/import.md#limits)", name)
	}
	return data, nil
}

// importMediaType is the Content-Type of FILE: by its extension, else by its content.
func importMediaType(name string, data []byte) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return "text/csv"
	case ".jsonl", ".ndjson", ".json":
		return "application/x-ndjson"
	}
	if placeos.Sniff(data) == placeos.CSV {
		return "text/csv"
	}
	return "application/x-ndjson"
}

// postRaw posts body as it is, with contentType, and returns the status and the answer. Only
// a failure to talk to the server is an error: the caller reads the status.
func (ac *adminClient) postRaw(ctx context.Context, path string, query url.Values, contentType string, body []byte) (int, []byte, error) {
	target := ac.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-API-Key", ac.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", contentType)
	resp, err := ac.http.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: reading the answer: %w", path, err)
	}
	return resp.StatusCode, out, nil
}

// apiErrorFrom is the *apiError of an answer of 400 or more (or a redirect), as
// adminClient.do builds it.
func apiErrorFrom(method, path string, code int, out []byte) error {
	e := &apiError{method: method, path: path, code: code}
	var msg struct {
		Error    string       `json:"error"`
		Failures []apiFailure `json:"failures"`
	}
	if json.Unmarshal(out, &msg) == nil && msg.Error != "" {
		e.message, e.failures = msg.Error, msg.Failures
	} else {
		e.message = string(bytes.TrimSpace(out[:min(len(out), 512)]))
	}
	return e
}

// importReport is the API's import report (keys.ImportResult).
type importReport struct {
	Error     string       `json:"error"`
	DryRun    bool         `json:"dry_run"`
	Imported  bool         `json:"imported"`
	Created   importCounts `json:"created"`
	Unchanged importCounts `json:"unchanged"`
	Conflicts importCounts `json:"conflicts"`
	Records   []struct {
		Line   int    `json:"line"`
		Kind   string `json:"kind"`
		ID     string `json:"id"`
		Action string `json:"action"`
		Reason string `json:"reason"`
	} `json:"records"`
}

type importCounts struct {
	Domains int `json:"domains"`
	Users   int `json:"users"`
	Keys    int `json:"keys"`
}

func (c importCounts) total() int { return c.Domains + c.Users + c.Keys }

// print writes the report: what happened, the counts, and every row created or in conflict.
func (r *importReport) print(w io.Writer) {
	switch {
	case r.DryRun:
		fmt.Fprintln(w, "dry run: nothing was written")
	case r.Imported:
		fmt.Fprintln(w, "imported")
	case r.Conflicts.total() > 0:
		fmt.Fprintln(w, "not imported: rows conflict with stored records; nothing was written")
	default:
		fmt.Fprintln(w, "nothing to import: every row is already stored as it is")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tDOMAINS\tUSERS\tKEYS")
	created := "created"
	if r.DryRun || !r.Imported {
		created = "to create"
	}
	for _, row := range []struct {
		name string
		c    importCounts
	}{{created, r.Created}, {"unchanged", r.Unchanged}, {"conflicts", r.Conflicts}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", row.name, row.c.Domains, row.c.Users, row.c.Keys)
	}
	_ = tw.Flush()
	var shown bool
	for _, rec := range r.Records {
		if rec.Action == "unchanged" {
			continue
		}
		if !shown {
			fmt.Fprintln(w)
			tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LINE\tKIND\tID\tACTION\tREASON")
			shown = true
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", rec.Line, clean(rec.Kind), clean(rec.ID), clean(rec.Action), clean(rec.Reason))
	}
	if shown {
		_ = tw.Flush()
	}
}

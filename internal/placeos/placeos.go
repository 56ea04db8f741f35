// Package placeos reads the rows of PlaceOS's authority, user and api_key tables, as PlaceOS's
// PostgreSQL database holds them, from JSON lines or CSV, into a keys.ImportBatch for `keyauthz
// import placeos` (docs/import.md). Every row keeps the line it came from, so that a bad one
// is reported where it is; columns other than those keyauthz keeps are ignored, and the values
// of the secret ones (a key's hash, a user's password digest and tokens) never appear in an
// error.
package placeos

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Format is the encoding of an export.
type Format int

const (
	// JSONLines is one JSON object per line, as `SELECT row_to_json(t) FROM api_key t` prints
	// them; blank lines are skipped.
	JSONLines Format = iota
	// CSV is RFC 4180 CSV with a header row, as psql's `\copy ... TO ... CSV HEADER` writes it;
	// several tables may follow one another, each with its own header row.
	CSV
)

func (f Format) String() string {
	if f == CSV {
		return "CSV"
	}
	return "JSON lines"
}

// Sniff tells the format of data from its first non-blank byte: "{" is JSON lines, anything
// else CSV.
func Sniff(data []byte) Format {
	data = bytes.TrimLeft(bytes.TrimPrefix(data, bom), " \t\r\n")
	if len(data) > 0 && data[0] == '{' {
		return JSONLines
	}
	return CSV
}

var bom = []byte("\xef\xbb\xbf")

// The PlaceOS tables an import reads.
const (
	TableAuthority = "authority"
	TableUser      = "user"
	TableAPIKey    = "api_key"
)

// maxErrors bounds the row errors one parse reports.
const maxErrors = 100

// maxLine bounds one line of JSON lines (a PlaceOS user row with all its columns is a few KiB).
const maxLine = 1 << 20

// RowError is one bad row: its line (the first line of a CSV record), its table if known, and
// what is wrong, without the values of secret columns.
type RowError struct {
	Line   int
	Table  string
	Reason string
}

// Error is every bad row of an export (at most maxErrors, then More says how many were left
// out); nothing of an export with an Error is imported.
type Error struct {
	Rows []RowError
	More int
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d bad rows", len(e.Rows)+e.More)
	for _, r := range e.Rows {
		fmt.Fprintf(&b, "\nline %d: %s", r.Line, r.reason())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n(and %d more)", e.More)
	}
	return b.String()
}

func (r RowError) reason() string {
	if r.Table == "" {
		return r.Reason
	}
	return r.Table + " row: " + r.Reason
}

// Failures returns the bad rows as the API's validation failures: field "line N".
func (e *Error) Failures() []keys.Failure {
	out := make([]keys.Failure, 0, len(e.Rows)+1)
	for _, r := range e.Rows {
		out = append(out, keys.Failure{Field: fmt.Sprintf("line %d", r.Line), Reason: r.reason()})
	}
	if e.More > 0 {
		out = append(out, keys.Failure{Field: "rows", Reason: fmt.Sprintf("and %d more bad rows", e.More)})
	}
	return out
}

// parser collects the batch and the errors of one parse.
type parser struct {
	batch keys.ImportBatch
	errs  Error
}

func (p *parser) fail(line int, table, format string, args ...any) {
	if len(p.errs.Rows) >= maxErrors {
		p.errs.More++
		return
	}
	p.errs.Rows = append(p.errs.Rows, RowError{Line: line, Table: table, Reason: fmt.Sprintf(format, args...)})
}

func (p *parser) result() (*keys.ImportBatch, error) {
	if len(p.errs.Rows) > 0 {
		return nil, &p.errs
	}
	return &p.batch, nil
}

// Parse reads an export in format f: rows of the authority, user and api_key tables in any
// order. It returns the batch, or an *Error listing every bad row (a row of no known table, a
// missing column, a value of the wrong type) with its line. Whether the rows are valid
// records, and fit with what is stored, is the store's to judge (keys.PrepareImport,
// keys.PlanImport), which reports them by line too.
func Parse(r io.Reader, f Format) (*keys.ImportBatch, error) {
	p := &parser{}
	var err error
	if f == CSV {
		err = p.csv(r)
	} else {
		err = p.jsonLines(r)
	}
	if err != nil {
		return nil, err
	}
	return p.result()
}

// jsonLines reads one JSON object per line. The table is the row's "table" member if it has
// one, else told from its columns (tableOf).
func (p *parser) jsonLines(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br)
		if errors.Is(err, errLongLine) {
			p.fail(line, "", "longer than %d bytes", maxLine)
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading line %d: %w", line, err)
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, bom)
		}
		if s := bytes.TrimSpace(b); len(s) > 0 {
			p.jsonRow(line, s)
		}
		if err != nil {
			return nil
		}
	}
}

var errLongLine = errors.New("line too long")

// readLine returns the next line without its end of line; io.EOF with the last one.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(out)+len(chunk) > maxLine {
			return nil, errLongLine
		}
		out = append(out, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return out, err
		}
		return bytes.TrimSuffix(out, []byte("\n")), nil
	}
}

func (p *parser) jsonRow(line int, b []byte) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		p.fail(line, "", "not a JSON object%s", jsonReason(err))
		return
	}
	cols := make([]string, 0, len(obj))
	for c := range obj {
		cols = append(cols, c)
	}
	table := ""
	if raw, ok := obj["table"]; ok {
		if err := json.Unmarshal(raw, &table); err != nil || !knownTable(table) {
			p.fail(line, "", `"table" must be "authority", "user" or "api_key"`)
			return
		}
	} else if table = tableOf(cols); table == "" {
		p.fail(line, "", `cannot tell the table from the columns: add "table": "authority", "user" or "api_key"`)
		return
	}
	p.row(line, table, jsonRow(obj))
}

// jsonReason is the part of a JSON syntax error worth showing: where, never the text.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf(" (JSON syntax error at byte %d)", se.Offset)
	}
	return ""
}

func knownTable(t string) bool {
	return t == TableAuthority || t == TableUser || t == TableAPIKey
}

// tableOf tells a row's table from its columns: a secret is an api_key's, an email a user's,
// a domain (without either) an authority's; "" if none of them.
func tableOf(cols []string) string {
	has := map[string]bool{}
	for _, c := range cols {
		has[c] = true
	}
	switch {
	case has["secret"]:
		return TableAPIKey
	case has["email"]:
		return TableUser
	case has["domain"]:
		return TableAuthority
	}
	return ""
}

// csv reads CSV: a header row, then that table's rows, and again for each table that follows.
func (p *parser) csv(r io.Reader) error {
	cr := csv.NewReader(skipBOM(r))
	cr.FieldsPerRecord = -1
	var header []string
	table := ""
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// A quoting error leaves the reader at an unknown place: stop there.
			p.fail(pe.StartLine, table, "CSV syntax error on line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if header == nil || isHeader(rec) {
			if t := tableOf(rec); t != "" && isHeader(rec) {
				header, table = rec, t
				continue
			}
			p.fail(line, "", "expected a header row naming the columns of the authority, user or api_key table (id, and secret, email or domain)")
			return nil
		}
		if len(rec) != len(header) {
			p.fail(line, table, "has %d fields, its header has %d", len(rec), len(header))
			continue
		}
		row := csvRow{}
		for i, c := range header {
			row[c] = rec[i]
		}
		p.row(line, table, row)
	}
}

func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
		_, _ = br.Discard(len(bom))
	}
	return br
}

// isHeader reports whether a CSV record is a header row: it has an "id" cell and every cell is
// a column name ([a-z_][a-z0-9_]*). No data row is one: a row's id is "authority-…", "user-…"
// or 32 hex digits, never "id", and its other cells hold ids with "-", JSON or blanks.
func isHeader(rec []string) bool {
	hasID := false
	for _, c := range rec {
		if c == "" {
			return false
		}
		for i := 0; i < len(c); i++ {
			ch := c[i]
			if (ch < 'a' || ch > 'z') && ch != '_' && (i == 0 || ch < '0' || ch > '9') {
				return false
			}
		}
		hasID = hasID || c == "id"
	}
	return hasID
}

// row converts one row of table into the batch's record, or reports what is wrong with it.
func (p *parser) row(line int, table string, r row) {
	c := &cells{r: r}
	for _, col := range required[table] {
		if !r.has(col) {
			c.fail(col, "is missing")
		}
	}
	if c.err != "" {
		p.fail(line, table, "%s", c.err)
		return
	}
	switch table {
	case TableAuthority:
		d := keys.Domain{
			ID: c.text("id"), Name: c.text("name"), Domain: c.text("domain"), Description: c.text("description"),
			CreatedAt: c.time("created_at"), UpdatedAt: c.time("updated_at"),
		}
		if c.err == "" {
			p.batch.Domains = append(p.batch.Domains, keys.ImportDomain{Line: line, Domain: d})
		}
	case TableUser:
		u := keys.User{
			ID: c.text("id"), AuthorityID: c.text("authority_id"), Name: c.text("name"), Email: c.text("email"),
			SysAdmin: c.boolean("sys_admin"), Support: c.boolean("support"), Groups: c.list("groups"),
			CreatedAt: c.time("created_at"), UpdatedAt: c.time("updated_at"),
		}
		if c.err == "" {
			p.batch.Users = append(p.batch.Users, keys.ImportUser{Line: line, User: u})
		}
	case TableAPIKey:
		k := keys.APIKey{
			ID: c.text("id"), Name: c.text("name"), Description: c.text("description"), Scopes: c.list("scopes"),
			Permissions: c.permission("permissions"), UserID: c.text("user_id"), AuthorityID: c.text("authority_id"),
			ExpiresAt: c.optTime("expires_at"), CreatedAt: c.time("created_at"), UpdatedAt: c.time("updated_at"),
		}
		hash := c.text("secret")
		if c.err == "" {
			p.batch.Keys = append(p.batch.Keys, keys.ImportKey{Line: line, Key: k, Hash: hash})
		}
	}
	if c.err != "" {
		p.fail(line, table, "%s", c.err)
	}
}

// required are the columns a row of each table must have. scopes has no default: PlaceOS's
// is ["public"], and an export that lost the column must not widen every key to it.
var required = map[string][]string{
	TableAuthority: {"id", "name", "domain"},
	TableUser:      {"id", "authority_id", "name", "email"},
	TableAPIKey:    {"id", "name", "secret", "user_id", "scopes"},
}

// cells reads typed values from a row, keeping the first problem (by column name, never by
// value).
type cells struct {
	r   row
	err string
}

func (c *cells) fail(col, format string, args ...any) {
	if c.err == "" {
		c.err = col + " " + fmt.Sprintf(format, args...)
	}
}

func (c *cells) text(col string) string {
	s, err := c.r.text(col)
	if err != nil {
		c.fail(col, "is not text")
	}
	return s
}

func (c *cells) boolean(col string) bool {
	s, err := c.r.scalar(col)
	if err != nil {
		c.fail(col, "is not true or false")
		return false
	}
	switch strings.ToLower(s) {
	case "", "f", "false":
		return false
	case "t", "true":
		return true
	}
	c.fail(col, "is not true or false")
	return false
}

// time reads a timestamp (0 when null): see parseTime.
func (c *cells) time(col string) int64 {
	if t := c.optTime(col); t != nil {
		return *t
	}
	return 0
}

func (c *cells) optTime(col string) *int64 {
	s, err := c.r.scalar(col)
	if err != nil {
		c.fail(col, "is not a time")
		return nil
	}
	if s == "" {
		return nil
	}
	t, ok := parseTime(s)
	if !ok {
		c.fail(col, "is not a time (want Unix seconds, RFC 3339 or PostgreSQL's timestamptz text)")
		return nil
	}
	return &t
}

func (c *cells) list(col string) []string {
	l, err := c.r.list(col)
	if err != nil {
		c.fail(col, "%v", err)
	}
	return l
}

// permission reads a level as PlaceOS stores or shows it: an integer 0-3, or a name in any
// case ("admin", "AdminSupport"); null or blank is PlaceOS's default, user. A value of
// neither kind is kept for the store to refuse.
func (c *cells) permission(col string) keys.Permission {
	s, err := c.r.scalar(col)
	if err != nil {
		c.fail(col, "is not a permission level")
		return ""
	}
	if s == "" {
		return keys.PermissionUser
	}
	var p keys.Permission
	b := strconv.Quote(s)
	if _, err := strconv.Atoi(s); err == nil {
		b = s
	}
	if err := p.UnmarshalJSON([]byte(b)); err != nil {
		c.fail(col, "is not a permission level")
	}
	return p
}

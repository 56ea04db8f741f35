package placeos

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// The values of a row, JSON or CSV, read as the types keyauthz keeps.

// row is one row's columns. Absent columns read as null.
type row interface {
	has(col string) bool
	// text is a text column: a string; null is "".
	text(col string) (string, error)
	// scalar is a column of a scalar type (boolean, number, time) as text; null is "".
	scalar(col string) (string, error)
	// list is a column holding strings: a JSON array, or PostgreSQL's array text ({a,"b c"});
	// null is an empty list.
	list(col string) ([]string, error)
}

var errNotList = errors.New("is not a list of strings (want a JSON array or PostgreSQL's {a,b})")

// jsonRow is a row of JSON lines.
type jsonRow map[string]json.RawMessage

func (r jsonRow) has(col string) bool { _, ok := r[col]; return ok }

func (r jsonRow) text(col string) (string, error) {
	var s *string
	if raw, ok := r[col]; ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}

func (r jsonRow) scalar(col string) (string, error) {
	raw, ok := r[col]
	if !ok {
		return "", nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", errors.New("not a scalar")
}

func (r jsonRow) list(col string) ([]string, error) {
	raw, ok := r[col]
	if !ok {
		return []string{}, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errNotList
	}
	switch v := v.(type) {
	case nil:
		return []string{}, nil
	case string: // a JSONB or array column exported as its text
		return parseList(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errNotList
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errNotList
}

// csvRow is a row of CSV, by column name. psql writes NULL as an empty field.
type csvRow map[string]string

func (r csvRow) has(col string) bool { _, ok := r[col]; return ok }

func (r csvRow) text(col string) (string, error)   { return r[col], nil }
func (r csvRow) scalar(col string) (string, error) { return strings.TrimSpace(r[col]), nil }
func (r csvRow) list(col string) ([]string, error) { return parseList(r[col]) }

// parseList reads a list column's text: a JSON array of strings (a JSONB column such as
// api_key.scopes), PostgreSQL's array text (a TEXT[] column such as user.groups), or nothing.
func parseList(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return []string{}, nil
	case s[0] == '[':
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, errNotList
		}
		if out == nil {
			out = []string{}
		}
		return out, nil
	case s[0] == '{':
		return parsePGArray(s)
	}
	return nil, errNotList
}

// parsePGArray reads a one-dimensional PostgreSQL array of text: {}, {a,b}, {"a b","c\"d"};
// NULL elements are left out.
func parsePGArray(s string) ([]string, error) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, errNotList
	}
	body := s[1 : len(s)-1]
	out := []string{}
	if strings.TrimSpace(body) == "" {
		return out, nil
	}
	for i := 0; ; {
		for i < len(body) && body[i] == ' ' {
			i++
		}
		var elem strings.Builder
		quoted := false
		if i < len(body) && body[i] == '"' {
			quoted = true
			i++
			closed := false
			for i < len(body) {
				c := body[i]
				if c == '\\' && i+1 < len(body) {
					elem.WriteByte(body[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				elem.WriteByte(c)
				i++
			}
			if !closed {
				return nil, errNotList
			}
			for i < len(body) && body[i] == ' ' {
				i++
			}
		} else {
			for i < len(body) && body[i] != ',' {
				if c := body[i]; c == '{' || c == '}' || c == '"' || c == '\\' {
					return nil, errNotList // nested arrays and stray quotes are not a list of text
				}
				elem.WriteByte(body[i])
				i++
			}
		}
		v := elem.String()
		if !quoted {
			v = strings.TrimSpace(v)
			if v == "" {
				return nil, errNotList
			}
		}
		if quoted || !strings.EqualFold(v, "NULL") {
			out = append(out, v)
		}
		if i == len(body) {
			return out, nil
		}
		if body[i] != ',' {
			return nil, errNotList
		}
		i++
	}
}

// timeLayouts are the forms of a timestamptz keyauthz reads: RFC 3339 (row_to_json writes
// it), PostgreSQL's text output ("2026-06-15 09:30:00.123456+00", psql's CSV), and the same
// without a zone (read as UTC).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
}

// parseTime reads a time as Unix seconds: an integer (PlaceOS's API shows times so), a number
// with a fraction (cut to the second), or a timestamp in one of timeLayouts.
func parseTime(s string) (int64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > -1e15 && f < 1e15 {
		return int64(f), true
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.Unix(), true
		}
	}
	return 0, false
}

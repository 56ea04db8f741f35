package placeos

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

var timeZero = time.Unix(0, 0)

// FuzzParse feeds arbitrary exports to Parse in the format Sniff tells. Parse must not panic;
// a parse either fails with an *Error whose every row has a line within the input, or gives a
// batch whose every record has such a line; and keys.PrepareImport, the next step of every
// import, must not panic on the batch either. The seed corpus (testdata/fuzz/FuzzParse) holds
// real-shaped exports of each form.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"authority-1","name":"A","domain":"a.example"}`))
	f.Add([]byte("id,name,domain\nauthority-1,A,a.example\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		format := Sniff(data)
		lines := bytes.Count(data, []byte("\n")) + 1
		b, err := Parse(bytes.NewReader(data), format)
		inRange := func(what string, line int) {
			if line < 1 || line > lines {
				t.Fatalf("%s on line %d of a %d-line input", what, line, lines)
			}
		}
		var pe *Error
		switch {
		case errors.As(err, &pe):
			if len(pe.Rows) == 0 {
				t.Fatal("an *Error with no rows")
			}
			for _, r := range pe.Rows {
				inRange("error "+r.Reason, r.Line)
			}
			for _, f := range pe.Failures() {
				if !strings.HasPrefix(f.Field, "line ") && f.Field != "rows" {
					t.Fatalf("failure field %q", f.Field)
				}
			}
			return
		case err != nil:
			t.Fatalf("Parse = %v, want nil or *Error", err)
		}
		for _, d := range b.Domains {
			inRange("authority", d.Line)
		}
		for _, u := range b.Users {
			inRange("user", u.Line)
		}
		for _, k := range b.Keys {
			inRange("api_key", k.Line)
		}
		if err := keys.PrepareImport(b, timeZero); err != nil && keys.ErrorCode(err) != keys.EUNPROCESSABLE {
			t.Fatalf("PrepareImport = %v, want nil or EUNPROCESSABLE", err)
		}
	})
}

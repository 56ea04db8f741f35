package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalizeCIDRs(t *testing.T) {
	many := make([]string, MaxAllowedCIDRs+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.0/24", i)
	}
	tests := []struct {
		name   string
		in     []string
		want   []string
		reason string // "" for no failure; else a part of the one failure's reason
	}{
		{"nil is an empty list", nil, []string{}, ""},
		{"IPv4 network", []string{"192.0.2.0/24"}, []string{"192.0.2.0/24"}, ""},
		{"IPv6 network, compressed and lower-case", []string{"2001:DB8:0:0::/32"}, []string{"2001:db8::/32"}, ""},
		{"host bits cleared", []string{"10.1.2.3/8"}, []string{"10.0.0.0/8"}, ""},
		{"one IPv4 address", []string{" 192.0.2.7 "}, []string{"192.0.2.7/32"}, ""},
		{"one IPv6 address", []string{"::1"}, []string{"::1/128"}, ""},
		{"IPv4-mapped network is IPv4", []string{"::ffff:192.0.2.0/120"}, []string{"192.0.2.0/24"}, ""},
		{"IPv4-mapped address is IPv4", []string{"::ffff:192.0.2.9"}, []string{"192.0.2.9/32"}, ""},
		{"short IPv6 prefix over the mapped range stays IPv6", []string{"::ffff:0:0/64"}, []string{"::/64"}, ""},
		{"everything", []string{"0.0.0.0/0", "::/0"}, []string{"0.0.0.0/0", "::/0"}, ""},
		{"duplicates after normalising dropped", []string{"10.0.0.1/8", "10.0.0.0/8", "10.0.0.0/8"}, []string{"10.0.0.0/8"}, ""},
		{"order kept", []string{"192.0.2.0/24", "10.0.0.0/8"}, []string{"192.0.2.0/24", "10.0.0.0/8"}, ""},
		{"at the limit", many[:MaxAllowedCIDRs], nil, ""},
		{"over the limit", many, nil, "too many entries (maximum is 64)"},
		{"empty entry", []string{""}, nil, `invalid entry ""`},
		{"host name", []string{"example.com"}, nil, "invalid entry"},
		{"prefix too long", []string{"10.0.0.0/33"}, nil, "invalid entry"},
		{"negative prefix", []string{"10.0.0.0/-1"}, nil, "invalid entry"},
		{"zone", []string{"fe80::1%eth0"}, nil, "invalid entry"},
		{"zone in a network", []string{"fe80::%eth0/64"}, nil, "invalid entry"},
		{"port", []string{"192.0.2.1:80"}, nil, "invalid entry"},
		{"leading zeros (octal in some parsers)", []string{"010.0.0.1/32"}, nil, "invalid entry"},
		{"long junk is cut when echoed", []string{strings.Repeat("x", 1000)}, nil, "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fs := NormalizeCIDRs(tt.in, nil)
			if tt.reason != "" {
				if len(fs) != 1 || fs[0].Field != FieldAllowedCIDRs || !strings.Contains(fs[0].Reason, tt.reason) {
					t.Fatalf("failures %v, want one on %s containing %q", fs, FieldAllowedCIDRs, tt.reason)
				}
				if len(fs[0].Reason) > 200 {
					t.Errorf("reason is %d bytes long: the entry must not be echoed whole", len(fs[0].Reason))
				}
				return
			}
			if len(fs) != 0 {
				t.Fatalf("failures %v, want none", fs)
			}
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if got == nil {
				t.Error("got nil, want a list")
			}
		})
	}
}

func TestParseClientIP(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{" 192.0.2.1 ", "192.0.2.1", true},
		{"2001:DB8::1", "2001:db8::1", true},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"::1", "::1", true},
		{"", "", false},
		{"unix:", "", false},
		{"192.0.2.1:443", "", false},
		{"[::1]", "", false},
		{"fe80::1%eth0", "", false},
		{"example.com", "", false},
		{"192.0.2.1, 198.51.100.2", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseClientIP(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseClientIP(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCheckRateLimit(t *testing.T) {
	tests := []struct {
		name string
		in   *RateLimit
		want int // failures
	}{
		{"none", nil, 0},
		{"one a second", &RateLimit{Rate: 1, Burst: 1}, 0},
		{"one an hour", &RateLimit{Rate: 1.0 / 3600, Burst: 5}, 0},
		{"at the bounds", &RateLimit{Rate: MaxRate, Burst: MaxBurst}, 0},
		{"zero rate", &RateLimit{Rate: 0, Burst: 1}, 1},
		{"negative rate", &RateLimit{Rate: -1, Burst: 1}, 1},
		{"NaN rate", &RateLimit{Rate: math.NaN(), Burst: 1}, 1},
		{"rate over the bound", &RateLimit{Rate: MaxRate * 2, Burst: 1}, 1},
		{"zero burst", &RateLimit{Rate: 1, Burst: 0}, 1},
		{"negative burst", &RateLimit{Rate: 1, Burst: -3}, 1},
		{"burst over the bound", &RateLimit{Rate: 1, Burst: MaxBurst + 1}, 1},
		{"both wrong", &RateLimit{}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := CheckRateLimit(tt.in, nil)
			if len(fs) != tt.want {
				t.Fatalf("failures %v, want %d", fs, tt.want)
			}
			for _, f := range fs {
				if f.Field != FieldRateLimit {
					t.Errorf("failure on %q, want %q", f.Field, FieldRateLimit)
				}
			}
		})
	}
}

func TestNullable(t *testing.T) {
	type body struct {
		C Nullable[[]string]  `json:"allowed_cidrs"`
		R Nullable[RateLimit] `json:"rate_limit"`
	}
	tests := []struct {
		in           string
		cSet, rSet   bool
		cNil, rNil   bool
		wantErr      bool
		wantRate     float64
		wantNetworks int
	}{
		{in: `{}`},
		{in: `{"allowed_cidrs": null, "rate_limit": null}`, cSet: true, rSet: true, cNil: true, rNil: true},
		{in: `{"allowed_cidrs": ["10.0.0.0/8"], "rate_limit": {"rate": 2.5, "burst": 3}}`, cSet: true, rSet: true, wantRate: 2.5, wantNetworks: 1},
		{in: `{"allowed_cidrs": []}`, cSet: true},
		{in: `{"allowed_cidrs": "10.0.0.0/8"}`, wantErr: true},
		{in: `{"rate_limit": {"rate": "fast"}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var b body
			err := json.Unmarshal([]byte(tt.in), &b)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if b.C.Set != tt.cSet || b.R.Set != tt.rSet || (b.C.Value == nil) != (tt.cNil || !tt.cSet) || (b.R.Value == nil) != (tt.rNil || !tt.rSet || tt.wantRate == 0) {
				t.Fatalf("got %+v", b)
			}
			if tt.wantRate != 0 && b.R.Value.Rate != tt.wantRate {
				t.Errorf("rate %v, want %v", b.R.Value.Rate, tt.wantRate)
			}
			if b.C.Value != nil && len(*b.C.Value) != tt.wantNetworks {
				t.Errorf("networks %v, want %d", *b.C.Value, tt.wantNetworks)
			}
		})
	}
}

// TestLimitsOnCreateAndUpdate runs the limits through the rules both backends share:
// PrepareKey on create, KeyPatch.Apply on update (set, leave, clear).
func TestLimitsOnCreateAndUpdate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n, err := PrepareKey(&APIKey{Name: "k", AllowedCIDRs: []string{"10.1.2.3/8"}, RateLimit: &RateLimit{Rate: 5, Burst: 10}}, now)
	if err != nil || len(n.Failures) != 0 {
		t.Fatalf("PrepareKey: %v %v", err, n.Failures)
	}
	if !slices.Equal(n.Record.AllowedCIDRs, []string{"10.0.0.0/8"}) || *n.Record.RateLimit != (RateLimit{5, 10}) {
		t.Fatalf("record %q %+v", n.Record.AllowedCIDRs, n.Record.RateLimit)
	}
	bad, err := PrepareKey(&APIKey{Name: "k", AllowedCIDRs: []string{"nope"}, RateLimit: &RateLimit{Rate: 0, Burst: 0}}, now)
	if err != nil || len(bad.Failures) != 3 {
		t.Fatalf("PrepareKey of bad limits: %v %v, want 3 failures", err, bad.Failures)
	}

	noUser := func(string) (*User, error) { return nil, NotFound("user", "") }
	free := func(string) (bool, error) { return false, nil }
	stored := n.Record
	tests := []struct {
		name      string
		u         KeyUpdate
		wantCIDRs []string
		wantRate  *RateLimit
		failures  int
	}{
		{"leaves both", KeyUpdate{Name: limitsPtr("other")}, []string{"10.0.0.0/8"}, &RateLimit{5, 10}, 0},
		{"sets both", KeyUpdate{AllowedCIDRs: Some([]string{"::1", "192.0.2.0/24"}), RateLimit: Some(RateLimit{1, 1})}, []string{"::1/128", "192.0.2.0/24"}, &RateLimit{1, 1}, 0},
		{"null clears both", KeyUpdate{AllowedCIDRs: Nullable[[]string]{Set: true}, RateLimit: Nullable[RateLimit]{Set: true}}, []string{}, nil, 0},
		{"empty list clears", KeyUpdate{AllowedCIDRs: Some([]string{})}, []string{}, &RateLimit{5, 10}, 0},
		{"bad network", KeyUpdate{AllowedCIDRs: Some([]string{"10.0.0.0/40"})}, nil, nil, 1},
		{"bad rate", KeyUpdate{RateLimit: Some(RateLimit{Rate: -1, Burst: 1})}, nil, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PrepareKeyUpdate(tt.u, now)
			if err != nil {
				t.Fatal(err)
			}
			rec := stored
			_, err = p.Apply(&rec, noUser, free)
			if tt.failures > 0 {
				var e *Error
				if ErrorCode(err) != EUNPROCESSABLE || !errors.As(err, &e) || len(e.Failures) != tt.failures {
					t.Fatalf("Apply: %v, want %d failures", err, tt.failures)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !slices.Equal(rec.AllowedCIDRs, tt.wantCIDRs) {
				t.Errorf("allowed_cidrs %q, want %q", rec.AllowedCIDRs, tt.wantCIDRs)
			}
			if (rec.RateLimit == nil) != (tt.wantRate == nil) || rec.RateLimit != nil && *rec.RateLimit != *tt.wantRate {
				t.Errorf("rate_limit %+v, want %+v", rec.RateLimit, tt.wantRate)
			}
		})
	}
}

func limitsPtr[T any](v T) *T { return &v }

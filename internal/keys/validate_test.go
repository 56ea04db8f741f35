package keys

import "testing"

func TestNormalizeScope(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"public", "public", false},
		{"systems.read", "systems.read", false},
		{"systems.READ", "systems.read", false},
		{"systems.Write", "systems.write", false},
		{"ei|edge-1_x", "ei|edge-1_x", false},
		{"edge-control", "edge-control", false},
		{"a.b.c", "", true},
		{"systems.execute", "", true},
		{"systems.", "", true},
		{".read", "", true},
		{"", "", true},
		{"Systems", "", true},
		{"sys tems", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeScope(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && ErrorCode(err) != EINVALID {
				t.Errorf("code = %s, want %s", ErrorCode(err), EINVALID)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"example.com", "example.com", true},
		{"Example.COM", "example.com", true},
		{"https://Example.com:8443/path?q=1", "example.com", true},
		{"example.com:8080/x", "example.com", true},
		{"localhost", "localhost", true},
		{"localhost:8080", "localhost", true},
		{"example.com.", "example.com", true},
		{"127.0.0.1:80", "127.0.0.1", true},
		{"[::1]:8080", "::1", true},
		{"::1", "::1", true}, // as a Host header's host reads once authz.Hostname has taken it
		{"[::1]", "::1", true},
		{"2001:DB8::1", "2001:db8::1", true},
		{" a-b.example.org ", "a-b.example.org", true},
		{"", "", false},
		{"https://", "", false},
		{"exa mple.com", "", false},
		{"a..b", "", false},
		{"bücher.de", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := NormalizeHost(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("NormalizeHost(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

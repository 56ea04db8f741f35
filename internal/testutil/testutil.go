// Package testutil holds small helpers that keyauthz's tests share across packages: the
// keyauthz binary built and run as a process for the end-to-end tests, a buffer
// safe for a server's concurrent writes, request bodies, and signing keys for bundle tests. Only tests import it.
package testutil

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer that a server or a child process may write to while the test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Body turns a test's request body into a reader: nil is no body (nil reader), a string or
// []byte is sent as is, and anything else is sent as its JSON encoding.
func Body(body any) (io.Reader, error) {
	switch b := body.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.NewReader(b), nil
	case []byte:
		return bytes.NewReader(b), nil
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(buf), nil
	}
}

// WriteRSAKeyPair writes a new 2048-bit RSA key pair as PEM files in dir, NAME.pem (private,
// PKCS #1) and NAME.pub.pem (public, PKIX), as `openssl genrsa` and `openssl rsa -pubout` make
// them, and returns their paths.
func WriteRSAKeyPair(t testing.TB, dir, name string) (private, public string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	return private, public
}

package opa

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// Source is where a policy comes from: a bundle (a .tar.gz file or a bundle folder), a policy
// folder laid out like policies/, or, when both are "", the policy built into the binary.
type Source struct {
	Bundle    string
	PolicyDir string
	// Verification, when not nil, is what every bundle must be signed with (see
	// LoadBundleVerified); it applies to Bundle only.
	Verification *bundle.VerificationConfig
}

// String names the source in logs and errors: "bundle PATH", "folder PATH" or "built-in".
func (s Source) String() string {
	switch {
	case s.Bundle != "":
		return "bundle " + s.Bundle
	case s.PolicyDir != "":
		return "folder " + s.PolicyDir
	default:
		return "built-in"
	}
}

// Watched reports whether the source can change while keyauthz runs (a bundle or a folder).
func (s Source) Watched() bool { return s.Bundle != "" || s.PolicyDir != "" }

// Load reads the policy once.
func (s Source) Load() (*bundle.Bundle, error) {
	b, _, err := s.read()
	return b, err
}

// read loads the policy and returns the fingerprint of exactly what it loaded for a bundle
// file (the policy is read from the bytes it hashed), or of the folder as found just before
// loading it.
func (s Source) read() (*bundle.Bundle, string, error) {
	switch {
	case s.Bundle != "":
		fi, err := os.Stat(s.Bundle)
		if err != nil {
			return nil, errFingerprint(err), fmt.Errorf("opa: load bundle: %w", err)
		}
		if fi.IsDir() {
			fp, err := folderFingerprint(s.Bundle)
			if err != nil {
				return nil, errFingerprint(err), fmt.Errorf("opa: load bundle: %w", err)
			}
			b, err := LoadBundleVerified(s.Bundle, s.Verification)
			return b, fp, err
		}
		raw, err := os.ReadFile(s.Bundle)
		if err != nil {
			return nil, errFingerprint(err), fmt.Errorf("opa: load bundle: %w", err)
		}
		b, err := ReadBundle(bytes.NewReader(raw), s.Bundle, s.Verification)
		return b, bytesFingerprint(raw), err
	case s.PolicyDir != "":
		fp, err := folderFingerprint(s.PolicyDir)
		if err != nil {
			return nil, errFingerprint(err), fmt.Errorf("opa: load policy directory: %w", err)
		}
		b, err := LoadDir(s.PolicyDir)
		return b, fp, err
	default:
		b, err := Builtin()
		return b, "built-in", err
	}
}

// fingerprint identifies the source's current content without loading it.
func (s Source) fingerprint() string {
	path := s.Bundle
	if path == "" {
		path = s.PolicyDir
	}
	if path == "" {
		return "built-in"
	}
	fi, err := os.Stat(path)
	if err != nil {
		return errFingerprint(err)
	}
	if fi.IsDir() {
		fp, err := folderFingerprint(path)
		if err != nil {
			return errFingerprint(err)
		}
		return fp
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return errFingerprint(err)
	}
	return bytesFingerprint(raw)
}

func errFingerprint(err error) string { return "error: " + err.Error() }

func bytesFingerprint(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "file " + hex.EncodeToString(sum[:])
}

// folderFingerprint hashes the names, modes and contents of every file under dir.
func folderFingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %v %d\n", filepath.ToSlash(rel), d.Type(), len(raw))
		h.Write(raw)
		return nil
	})
	if err != nil {
		return "", err
	}
	return "folder " + hex.EncodeToString(h.Sum(nil)), nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// bootstrapKeyFile is where the first admin key is written, mode 0600, inside the data folder.
const bootstrapKeyFile = "bootstrap.key"

// prepareDataDir creates the data folder with mode 0700, or checks that an existing one is
// private: it holds the key store (Badger writes its files 0644) and the bootstrap key, so a
// folder that group or others may read, write or enter is refused before anything is opened
// in it, unless it is empty. An empty folder (what `mkdir` or a fresh volume gives, 0755 under
// the usual umask) holds nothing to protect yet: it is made 0700 and checked to be still empty
// afterwards, so that nothing planted before the chmod is used. A folder with files in it is
// the operator's to fix: its files may already have been read, or planted.
func prepareDataDir(dir string) error {
	// Lstat, not Stat: a link there could point anywhere, and the checks below must be of the
	// folder keyauthz writes to.
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
		// The umask may have narrowed 0700 (to 0500, say, which Badger cannot write to).
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("data folder: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("data folder %s is a symbolic link: give the folder's own path", dir)
	case !fi.IsDir():
		return fmt.Errorf("data folder %s is not a folder", dir)
	case !ownedByUs(fi):
		// Its owner could read the store, or swap in one holding a key of their own.
		return fmt.Errorf("data folder %s is owned by another user: it must belong to the user keyauthz runs as (uid %d)", dir, os.Geteuid())
	case fi.Mode().Perm()&0o077 == 0:
		return nil
	}
	refuse := fmt.Errorf("data folder %s has mode %04o: it holds the key store and the bootstrap key, so group and others must have no access to it; run `chmod 700 %s` and start again",
		dir, fi.Mode().Perm(), dir)
	if !isEmptyDir(dir) {
		return refuse
	}
	if err := os.Chmod(dir, 0o700); err != nil || !isEmptyDir(dir) {
		return refuse
	}
	return nil
}

// ownedByUs reports whether fi belongs to the effective user; true where the system does not
// say who owns a file.
func ownedByUs(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || int(st.Uid) == os.Geteuid()
}

func isEmptyDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) == 0
}

// bootstrap runs on a store with no domain: it creates the bootstrap domain, an admin user and
// an admin key (scopes public, permissions admin), and writes the key to
// <data-dir>/bootstrap.key. It logs the file's path, never the key.
//
// In cluster mode several nodes may find the store empty at once. The etcd store creates the
// three records in one transaction that commits only while no domain exists (Bootstrapper),
// so exactly one node creates them and writes its file; the others remove their empty file
// and log that the cluster is already bootstrapped, and a node that dies mid-way leaves no
// domain without its admin. A store without that transaction creates them one by one: the
// domain's creation decides (its host is unique), and a node refused with "has already been
// taken" stops there.
func bootstrap(ctx context.Context, store keys.Service, cfg Config, logger *slog.Logger) (err error) {
	domains, err := store.ListDomains(ctx)
	if err != nil {
		return err
	}
	if len(domains) > 0 {
		if cfg.clustered() {
			logger.Info("the cluster is already bootstrapped: no bootstrap key written by this node", "domains", len(domains))
		}
		return nil
	}
	// The file is created before any record, so that a file or a link planted there stops the
	// bootstrap while the store is still empty: once fixed, the next start bootstraps.
	path := filepath.Join(cfg.DataDir, bootstrapKeyFile)
	f, err := createSecretFile(path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(path) // our own new file: O_EXCL created it
		}
	}()
	host, _ := keys.NormalizeHost(cfg.BootstrapDomain)
	d := &keys.Domain{Name: host, Domain: host, Description: "created by keyauthz on first start"}
	u := &keys.User{Name: "admin", Email: "admin@" + host, SysAdmin: true, Support: true}
	// The bootstrap key has the top level, admin_support, like its user: the minting cap lets
	// no key grant a level above its own, so a bootstrap key of admin level would leave no way
	// to create (or import from PlaceOS) an admin_support user or key. No route of the table
	// needs more than admin, so this widens nothing a request can do (docs/operations.md).
	k := &keys.APIKey{
		Name: "bootstrap", Description: "admin key created on first start",
		Scopes: []string{"public"}, Permissions: keys.PermissionAdminSupport,
	}
	if b, ok := store.(Bootstrapper); ok {
		plaintext, created, err := b.Bootstrap(ctx, d, u, k)
		if err != nil {
			return err
		}
		if !created {
			_ = f.Close()
			_ = os.Remove(path)
			logger.Info("the cluster is already bootstrapped: another node created the bootstrap domain first; no bootstrap key written by this node",
				"domain", host)
			return nil
		}
		return finishBootstrap(f, plaintext, d, u, k, path, logger)
	}
	if err := store.CreateDomain(ctx, d); err != nil {
		if isTaken(err, "domain") {
			// Another node's bootstrap won the race (cluster mode): ours stops here.
			_ = f.Close()
			_ = os.Remove(path)
			logger.Info("the cluster is already bootstrapped: another node created the bootstrap domain first; no bootstrap key written by this node",
				"domain", host)
			return nil
		}
		return err
	}
	u.AuthorityID = d.ID
	if err := store.CreateUser(ctx, u); err != nil {
		return err
	}
	k.UserID = u.ID
	plaintext, err := store.CreateKey(ctx, k)
	if err != nil {
		return err
	}
	return finishBootstrap(f, plaintext, d, u, k, path, logger)
}

// Bootstrapper is a store that creates the bootstrap records in one transaction, and only
// while it holds no domain (etcdstore.Store.Bootstrap): created is false when another node
// did it first.
type Bootstrapper interface {
	Bootstrap(ctx context.Context, d *keys.Domain, u *keys.User, k *keys.APIKey) (plaintext keys.Secret, created bool, err error)
}

// finishBootstrap writes the new key to f (at path) and logs where it is, never the key.
func finishBootstrap(f *os.File, plaintext keys.Secret, d *keys.Domain, u *keys.User, k *keys.APIKey, path string, logger *slog.Logger) error {
	if err := writeSecret(f, string(plaintext)+"\n"); err != nil {
		return err
	}
	logger.Info("bootstrapped: created a domain, an admin user and an admin key; the key is in the file",
		"domain", d.Domain, "user_id", u.ID, "key_id", k.ID, "key_file", path)
	return nil
}

// createSecretFile creates path as a new regular file of mode 0600. It never opens what is
// already there: an existing file (which another user may be able to read) or a symbolic link
// (which would send the key wherever it points) is an error.
func createSecretFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s already exists (a file or a link): keyauthz writes the bootstrap key only to a file it creates; if it is not yours, find out who put it there, then remove it and start again", path)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	// The umask can only narrow the mode; make it exactly 0600 and check.
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		_ = f.Close()
		return nil, fmt.Errorf("create %s: mode %v after creation, want a regular file of mode 0600", path, fi.Mode())
	}
	return f, nil
}

// writeSecret writes data to f, syncs and closes it, so that the key survives a crash right
// after start-up.
func writeSecret(f *os.File, data string) error {
	if _, err := f.WriteString(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return f.Close()
}

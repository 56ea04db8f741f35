package keys

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BulkKey is one key for a store's bulk load (badgerstore.Store.ImportKeys, for benchmarks):
// the key as the store keeps it and its hash (hex(HMAC-SHA512(key = secret, message = id)), as
// Generate returns it or a PlaceOS row holds it). An import of PlaceOS rows goes through
// Service.Import instead, which is all or nothing.
type BulkKey struct {
	Key  APIKey
	Hash string
}

// CheckImport checks and normalises k, a key to import with the given hash, as every bulk
// import does: an id of 32 lowercase hex characters, a hash of 128 hex digits, a name and a
// user_id, scopes within the limits of CreateKey (normalised in place) and a valid permission
// (empty: user). It returns EINVALID naming the key and the problem. The name's uniqueness
// and the user's level are not checked: an import's caller guarantees them.
func CheckImport(k *APIKey, hash string) error {
	if len(k.ID) != idLen || !isLowerHex(k.ID) {
		return Errorf(EINVALID, "import key %q: id is not 32 lowercase hex characters", k.ID)
	}
	if _, err := hex.DecodeString(hash); err != nil || len(hash) != 128 {
		return Errorf(EINVALID, "import key %s: hash is not 128 hex digits", k.ID)
	}
	if strings.TrimSpace(k.Name) == "" || k.UserID == "" {
		return Errorf(EINVALID, "import key %s: name and user_id are required", k.ID)
	}
	if fs := CheckScopeLimits(k.Scopes, nil); len(fs) > 0 {
		return Errorf(EINVALID, "import key %s: scopes %s", k.ID, fs[0].Reason)
	}
	scopes, err := NormalizeScopes(k.Scopes)
	if err != nil {
		return err
	}
	k.Scopes = scopes
	if k.Permissions == "" {
		k.Permissions = PermissionUser
	}
	if !k.Permissions.Valid() {
		return Errorf(EINVALID, "import key %s: permissions %q is invalid (want user, support, admin or admin_support)", k.ID, k.Permissions)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Import with ids kept (docs/import.md): domains, users and keys taken over from another
// system (PlaceOS) as they are there, so that their keys work unchanged. Unlike ImportKeys it
// is all or nothing: a backend's Import prepares the batch (PrepareImport), plans it against
// what it stores inside one transaction (PlanImport), and writes the records to create in that
// same transaction, or nothing at all when any record is invalid or conflicts.

// ImportBatch is what one import brings, each record with the line of the file it came from
// (for the reports).
type ImportBatch struct {
	Domains []ImportDomain
	Users   []ImportUser
	Keys    []ImportKey
}

// ImportDomain is a domain to import, its id kept.
type ImportDomain struct {
	Line   int
	Domain Domain
}

// ImportUser is a user to import, its id kept.
type ImportUser struct {
	Line int
	User User
}

// ImportKey is a key to import, its id and hash kept. Key.AuthorityID, if set, must be the
// domain of the key's user.
type ImportKey struct {
	Line int
	Key  APIKey
	Hash string
}

// What an import does with one record.
const (
	ImportCreate    = "create"    // not stored: it will be (or was) created
	ImportUnchanged = "unchanged" // stored with the same id and the same fields: left alone
	ImportConflict  = "conflict"  // stored differently, or its host or name belongs to another record
)

// ImportOutcome is what an import does with one record: its line, kind (KindDomain, KindUser,
// KindKey), id, action and, for a conflict, why.
type ImportOutcome struct {
	Line   int    `json:"line"`
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// ImportCounts counts records by kind.
type ImportCounts struct {
	Domains int `json:"domains"`
	Users   int `json:"users"`
	Keys    int `json:"keys"`
}

func (c *ImportCounts) add(kind string) {
	switch kind {
	case KindDomain:
		c.Domains++
	case KindUser:
		c.Users++
	case KindKey:
		c.Keys++
	}
}

// Total is the number of records counted.
func (c ImportCounts) Total() int { return c.Domains + c.Users + c.Keys }

// ImportResult is the report of an import: whether it was a dry run, whether it wrote
// anything, the records counted by action, and every record's outcome in line order.
type ImportResult struct {
	DryRun    bool            `json:"dry_run"`
	Imported  bool            `json:"imported"`
	Created   ImportCounts    `json:"created"`
	Unchanged ImportCounts    `json:"unchanged"`
	Conflicts ImportCounts    `json:"conflicts"`
	Records   []ImportOutcome `json:"records"`
}

func (r *ImportResult) record(line int, kind, id, action, reason string) {
	r.Records = append(r.Records, ImportOutcome{Line: line, Kind: kind, ID: id, Action: action, Reason: reason})
	switch action {
	case ImportCreate:
		r.Created.add(kind)
	case ImportUnchanged:
		r.Unchanged.add(kind)
	case ImportConflict:
		r.Conflicts.add(kind)
	}
}

// ErrImportConflicts is the ECONFLICT of an import refused because some of its records
// conflict with stored ones; the result lists them.
var ErrImportConflicts = &Error{Code: ECONFLICT, Message: "the import conflicts with stored records: nothing was imported"}

// MaxImportIDLength bounds the ids of imported domains and users.
const MaxImportIDLength = 64

// checkImportID reports whether id may name an imported domain or user: 1 to
// MaxImportIDLength characters of [A-Za-z0-9_-] (PlaceOS's "authority-…" and "user-…" ids are;
// a "/" would break the stores' key layout).
func checkImportID(id string) bool {
	if id == "" || len(id) > MaxImportIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// importFailures collects the bad rows of an import, one failure per problem, its field
// "line N" and its reason naming the record and the problem.
type importFailures []Failure

func (fs *importFailures) add(line int, kind, id, format string, args ...any) {
	who := kind
	if id != "" {
		who += " " + id
	}
	*fs = append(*fs, Failure{Field: fmt.Sprintf("line %d", line), Reason: who + ": " + fmt.Sprintf(format, args...)})
}

// addFields adds one failure per field failure of a record.
func (fs *importFailures) addFields(line int, kind, id string, failures []Failure) {
	for _, f := range failures {
		fs.add(line, kind, id, "%s %s", f.Field, f.Reason)
	}
}

func (fs importFailures) err() error {
	if len(fs) == 0 {
		return nil
	}
	slices.SortStableFunc(fs, func(a, b Failure) int { return cmp.Compare(lineOf(a.Field), lineOf(b.Field)) })
	return ValidationFailed(fs)
}

func lineOf(field string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(field, "line "))
	return n
}

// PrepareImport checks and normalises every record of b on its own and against the rest of
// the batch, before any store access, at now: ids (a key's: 32 lowercase hex characters; a
// domain's or user's: checkImportID), each record as its create would validate it
// (NormalizeDomain, NormalizeUser, CheckImport and CheckName for keys), a user's authority_id
// given, no id twice and no host twice in the batch. Expiry is not checked: an expired key is
// imported as it is and refused as expired, as it was where it came from. Missing timestamps
// become now. It returns EUNPROCESSABLE with one failure per problem, field "line N".
func PrepareImport(b *ImportBatch, now time.Time) error {
	var fs importFailures
	stamp := func(created, updated *int64) {
		if *created == 0 {
			*created = now.Unix()
		}
		if *updated == 0 {
			*updated = *created
		}
	}
	seen := map[string]int{} // kind/id → line
	dup := func(line int, kind, id string) bool {
		if first, ok := seen[kind+"/"+id]; ok {
			fs.add(line, kind, id, "id appears twice (first on line %d)", first)
			return true
		}
		seen[kind+"/"+id] = line
		return false
	}
	hosts := map[string]int{}
	for i := range b.Domains {
		d := &b.Domains[i]
		if !checkImportID(d.Domain.ID) {
			fs.add(d.Line, KindDomain, "", "id %s", ReasonInvalid)
			continue
		}
		if dup(d.Line, KindDomain, d.Domain.ID) {
			continue
		}
		if f := NormalizeDomain(&d.Domain); len(f) > 0 {
			fs.addFields(d.Line, KindDomain, d.Domain.ID, f)
			continue
		}
		if first, ok := hosts[d.Domain.Domain]; ok {
			fs.add(d.Line, KindDomain, d.Domain.ID, "domain %s is also the host of line %d", d.Domain.Domain, first)
		}
		hosts[d.Domain.Domain] = d.Line
		stamp(&d.Domain.CreatedAt, &d.Domain.UpdatedAt)
	}
	for i := range b.Users {
		u := &b.Users[i]
		if !checkImportID(u.User.ID) {
			fs.add(u.Line, KindUser, "", "id %s", ReasonInvalid)
			continue
		}
		if dup(u.Line, KindUser, u.User.ID) {
			continue
		}
		f := NormalizeUser(&u.User)
		if u.User.AuthorityID == "" {
			f = append(f, Failure{"authority_id", ReasonRequired})
		}
		fs.addFields(u.Line, KindUser, u.User.ID, f)
		stamp(&u.User.CreatedAt, &u.User.UpdatedAt)
	}
	for i := range b.Keys {
		k := &b.Keys[i]
		if len(k.Key.ID) != idLen || !isLowerHex(k.Key.ID) {
			fs.add(k.Line, KindKey, "", "id is not 32 lowercase hex characters")
			continue
		}
		if dup(k.Line, KindKey, k.Key.ID) {
			continue
		}
		k.Hash = strings.ToLower(k.Hash)
		var f []Failure
		k.Key.Name, f = CheckName("name", k.Key.Name, nil)
		if len(f) > 0 {
			fs.addFields(k.Line, KindKey, k.Key.ID, f)
			continue
		}
		k.Key.Description = strings.TrimSpace(k.Key.Description)
		if err := CheckImport(&k.Key, k.Hash); err != nil {
			fs.add(k.Line, KindKey, k.Key.ID, "%s", strings.TrimPrefix(ErrorMessage(err), "import key "+k.Key.ID+": "))
			continue
		}
		k.Key.LastUsedAt = nil
		stamp(&k.Key.CreatedAt, &k.Key.UpdatedAt)
	}
	return fs.err()
}

// ImportReads are the reads PlanImport makes, in the caller's transaction. The record reads
// return an ENOTFOUND error for an absent id; the index reads return the id holding a host or
// a key name (NameKey form, in the domain domainID), or ok false. Deleted returns the time
// (Unix seconds) the record of that kind (KindDomain, KindUser, KindKey) and id was deleted,
// from its deletion mark (tombstone.go), or ok false if it never was.
type ImportReads struct {
	Domain    func(id string) (*Domain, error)
	User      func(id string) (*User, error)
	Key       func(id string) (*APIKey, error) // with its Hash
	HostOwner func(host string) (id string, ok bool, err error)
	NameOwner func(domainID, name string) (id string, ok bool, err error)
	Deleted   func(kind, id string) (at int64, ok bool, err error)
}

// ImportPlan is an import planned against the store: the report, and the records to create
// (keys with their Hash), in the batch's order.
type ImportPlan struct {
	Result  ImportResult
	Domains []*Domain
	Users   []*User
	Keys    []*APIKey
}

// Writes reports whether the plan writes anything: not a dry run, no conflict, something to
// create.
func (p *ImportPlan) Writes() bool {
	return !p.Result.DryRun && p.Result.Conflicts.Total() == 0 && len(p.Domains)+len(p.Users)+len(p.Keys) > 0
}

// PlanImport decides, inside the import's transaction, what to do with each record of b
// (prepared by PrepareImport): a record whose id was deleted (its deletion mark, tombstone.go)
// is a conflict, whatever else it holds, so that no import brings back a revoked key or a
// deleted user or domain; a record stored with its id is unchanged if its fields are the
// same (sameDomain, sameUser, sameKey) and a conflict if not; a new domain whose host another
// domain holds, or a new key whose name another key holds in its domain, is a conflict; any
// other record is created. A user's domain and a key's user must exist, in the batch or in
// the store; a key's domain is its user's (a different authority_id given is refused, not
// moved), and its level may not be above its user's (CheckPermissions). Those problems, and
// two keys of one name in one domain, are bad rows: EUNPROCESSABLE, field "line N". A read's
// other error is returned as is.
func PlanImport(b *ImportBatch, r ImportReads, dryRun bool) (*ImportPlan, error) {
	p := &ImportPlan{Result: ImportResult{DryRun: dryRun, Records: []ImportOutcome{}}}
	res := &p.Result
	var fs importFailures
	// found turns a read's error into whether the record exists (ENOTFOUND: it does not).
	found := func(err error) (bool, error) {
		if ErrorCode(err) == ENOTFOUND {
			return false, nil
		}
		return err == nil, err
	}
	// wasDeleted records a conflict for a record whose id was deleted, and reports it.
	wasDeleted := func(line int, kind, id string) (bool, error) {
		at, ok, err := r.Deleted(kind, id)
		if err != nil || !ok {
			return false, err
		}
		res.record(line, kind, id, ImportConflict, deletedReason(kind, id, at))
		return true, nil
	}
	domains := map[string]bool{}
	for i := range b.Domains {
		d := &b.Domains[i].Domain
		line := b.Domains[i].Line
		domains[d.ID] = true
		if gone, err := wasDeleted(line, KindDomain, d.ID); err != nil {
			return nil, err
		} else if gone {
			continue
		}
		old, err := r.Domain(d.ID)
		if ok, err := found(err); err != nil {
			return nil, err
		} else if ok {
			if diff := sameDomain(old, d); diff != "" {
				res.record(line, KindDomain, d.ID, ImportConflict, "stored with other values of "+diff)
			} else {
				res.record(line, KindDomain, d.ID, ImportUnchanged, "")
			}
			continue
		}
		owner, taken, err := r.HostOwner(d.Domain)
		if err != nil {
			return nil, err
		}
		if taken {
			res.record(line, KindDomain, d.ID, ImportConflict, fmt.Sprintf("domain %s is the host of stored domain %s", d.Domain, owner))
			continue
		}
		res.record(line, KindDomain, d.ID, ImportCreate, "")
		p.Domains = append(p.Domains, d)
	}
	users := map[string]*User{}
	badUsers := map[string]bool{} // users refused: their keys are not judged again
	for i := range b.Users {
		u := &b.Users[i].User
		line := b.Users[i].Line
		if !domains[u.AuthorityID] {
			_, err := r.Domain(u.AuthorityID)
			if ok, err := found(err); err != nil {
				return nil, err
			} else if !ok {
				fs.add(line, KindUser, u.ID, "authority_id %s %s", u.AuthorityID, ReasonMissing)
				badUsers[u.ID] = true
				continue
			}
			domains[u.AuthorityID] = true
		}
		users[u.ID] = u
		if gone, err := wasDeleted(line, KindUser, u.ID); err != nil {
			return nil, err
		} else if gone {
			continue
		}
		old, err := r.User(u.ID)
		if ok, err := found(err); err != nil {
			return nil, err
		} else if ok {
			if diff := sameUser(old, u); diff != "" {
				res.record(line, KindUser, u.ID, ImportConflict, "stored with other values of "+diff)
			} else {
				res.record(line, KindUser, u.ID, ImportUnchanged, "")
			}
			continue
		}
		res.record(line, KindUser, u.ID, ImportCreate, "")
		p.Users = append(p.Users, u)
	}
	names := map[string]int{} // domain/NameKey → line
	for i := range b.Keys {
		k := &b.Keys[i].Key
		line := b.Keys[i].Line
		// First of all: a revoked key is a conflict whatever its user or its fields.
		if gone, err := wasDeleted(line, KindKey, k.ID); err != nil {
			return nil, err
		} else if gone {
			continue
		}
		if badUsers[k.UserID] {
			continue
		}
		owner, ok := users[k.UserID]
		if !ok {
			u, err := r.User(k.UserID)
			if ok, err := found(err); err != nil {
				return nil, err
			} else if !ok {
				fs.add(line, KindKey, k.ID, "user_id %s %s", k.UserID, ReasonMissing)
				continue
			}
			owner, users[k.UserID] = u, u
		}
		if k.AuthorityID != "" && k.AuthorityID != owner.AuthorityID {
			fs.add(line, KindKey, k.ID, "authority_id %s is not the domain of its user (%s)", k.AuthorityID, owner.AuthorityID)
			continue
		}
		k.AuthorityID = owner.AuthorityID
		if f := CheckPermissions(k.Permissions, owner, nil); len(f) > 0 {
			fs.addFields(line, KindKey, k.ID, f)
			continue
		}
		name := k.AuthorityID + "/" + NameKey(k.Name)
		if first, ok := names[name]; ok {
			fs.add(line, KindKey, k.ID, "name %q is also the name of line %d's key in the same domain", k.Name, first)
			continue
		}
		names[name] = line
		k.Hash = b.Keys[i].Hash
		old, err := r.Key(k.ID)
		if ok, err := found(err); err != nil {
			return nil, err
		} else if ok {
			if diff := sameKey(old, k); diff != "" {
				res.record(line, KindKey, k.ID, ImportConflict, "stored with other values of "+diff)
			} else {
				res.record(line, KindKey, k.ID, ImportUnchanged, "")
			}
			continue
		}
		holder, taken, err := r.NameOwner(k.AuthorityID, k.Name)
		if err != nil {
			return nil, err
		}
		if taken && holder != k.ID {
			res.record(line, KindKey, k.ID, ImportConflict, fmt.Sprintf("name %q is taken in its domain by stored key %s", k.Name, holder))
			continue
		}
		res.record(line, KindKey, k.ID, ImportCreate, "")
		p.Keys = append(p.Keys, k)
	}
	if err := fs.err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(res.Records, func(a, b ImportOutcome) int { return cmp.Compare(a.Line, b.Line) })
	return p, nil
}

// differ lists the names whose values differ ("" if none), joined by ", ".
func differ(fields ...any) string {
	var out []string
	for i := 0; i+1 < len(fields); i += 2 {
		if !fields[i+1].(bool) {
			out = append(out, fields[i].(string))
		}
	}
	return strings.Join(out, ", ")
}

// sameDomain compares what an import sets of a domain: name, host, description.
func sameDomain(old, d *Domain) string {
	return differ("name", old.Name == d.Name, "domain", old.Domain == d.Domain, "description", old.Description == d.Description)
}

// sameUser compares what an import sets of a user: domain, name, email, flags, groups.
func sameUser(old, u *User) string {
	return differ("authority_id", old.AuthorityID == u.AuthorityID, "name", old.Name == u.Name, "email", old.Email == u.Email,
		"sys_admin", old.SysAdmin == u.SysAdmin, "support", old.Support == u.Support,
		"groups", slices.Equal(old.Groups, u.Groups) || len(old.Groups)+len(u.Groups) == 0)
}

// sameKey compares what an import sets of a key: the hash (reported as "secret", the PlaceOS
// column, never with its value), name, description, scopes, level, user, expiry.
func sameKey(old, k *APIKey) string {
	return differ("secret", old.Hash == k.Hash, "name", old.Name == k.Name, "description", old.Description == k.Description,
		"scopes", slices.Equal(old.Scopes, k.Scopes), "permissions", old.Permissions == k.Permissions,
		"user_id", old.UserID == k.UserID, "expires_at", sameExpiry(old.ExpiresAt, k.ExpiresAt))
}

// ImportAudit is the "after" of an import's one audit record: what it created, by id.
type ImportAudit struct {
	Source  string   `json:"source"`
	Domains []string `json:"domains"`
	Users   []string `json:"users"`
	Keys    []string `json:"keys"`
}

// Audit returns the audit "after" of the plan's writes, from source ("placeos").
func (p *ImportPlan) Audit(source string) *ImportAudit {
	a := &ImportAudit{Source: source, Domains: []string{}, Users: []string{}, Keys: []string{}}
	for _, d := range p.Domains {
		a.Domains = append(a.Domains, d.ID)
	}
	for _, u := range p.Users {
		a.Users = append(a.Users, u.ID)
	}
	for _, k := range p.Keys {
		a.Keys = append(a.Keys, k.ID)
	}
	return a
}

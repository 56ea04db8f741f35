package opa

import "github.com/open-policy-agent/opa/v1/ast"

// Input is the policy input (`input` in Rego), built by Go for every request.
// Its shape is the contract of docs/policy-contract.md#input; keep the two in step. Input is
// turned into the Rego value directly (astValue, below), without a JSON round trip.
type Input struct {
	Request Request `json:"request"`
	// Domain is the domain record whose host equals Request.Host; nil when none does.
	Domain *Domain `json:"domain,omitempty"`
	// Key and User are set only for a valid, unexpired key.
	Key  *Key  `json:"key,omitempty"`
	User *User `json:"user,omitempty"`

	// terms are prebuilt AST parts (SetTerms): used instead of building Key, User and Domain.
	terms Terms
}

// Terms are parts of the policy input already built as Rego values: the credential path builds
// the key, user and domain parts once per verified key (and host) with Key.Term, User.Term and
// Domain.Term, and only the request part per decision. Terms are immutable once built, so one
// may serve any number of inputs at once. A nil field is built from the Input as usual.
type Terms struct {
	Key, User, Domain *ast.Term
}

// SetTerms makes in use t for its key, user and domain parts. Each term must be the Term of
// in's own Key, User and Domain (the same values): the policy sees the terms, not the structs.
func (in *Input) SetTerms(t Terms) { in.terms = t }

// SetKeyTerm, SetUserTerm and SetDomainTerm set one part of the terms (SetTerms); nil builds
// that part from the Input as usual.
func (in *Input) SetKeyTerm(t *ast.Term) { in.terms.Key = t }

// SetUserTerm sets the user part of the terms (SetKeyTerm).
func (in *Input) SetUserTerm(t *ast.Term) { in.terms.User = t }

// SetDomainTerm sets the domain part of the terms (SetKeyTerm).
func (in *Input) SetDomainTerm(t *ast.Term) { in.terms.Domain = t }

// Request is the request being judged, with its path already normalised (see NormalizePath).
type Request struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Host     string              `json:"host"`
	Protocol string              `json:"protocol"` // "http" or "websocket"
	Query    map[string][]string `json:"query"`
	// CrossSite is true when a browser says another site started the request: Sec-Fetch-Site
	// present and not "same-origin" or "none", or Origin present with a host other than Host.
	// The policy refuses writes made with an ambient (cookie or URL) key on such a request.
	CrossSite bool `json:"cross_site"`
	// ClientIP is the client's address as the trusted source of the surface gives it
	// (docs/limits.md#the-client-address), canonical (keys.ParseClientIP); absent when unknown.
	ClientIP string `json:"client_ip,omitempty"`
}

// Domain is a PlaceOS authority as the policy sees it.
type Domain struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
}

// Key is the presented API key as the policy sees it: never its secret.
type Key struct {
	ID          string   `json:"id"`
	AuthorityID string   `json:"authority_id"`
	Scopes      []string `json:"scopes"`
	Permissions string   `json:"permissions"`
	Source      string   `json:"source"` // "header", "query" or "cookie"
	// AllowedCIDRs are the only networks the key may be used from (docs/limits.md); absent
	// when the key has no allow-list.
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
}

// User is the user a key emulates.
type User struct {
	ID          string   `json:"id"`
	AuthorityID string   `json:"authority_id"`
	Name        string   `json:"name"`
	Email       string   `json:"email"`
	SysAdmin    bool     `json:"sys_admin"`
	Support     bool     `json:"support"`
	Groups      []string `json:"groups"`
}

// Keys of the input object, built once: terms are immutable once built, so sharing them
// between inputs is safe and saves allocations on every decision.
var (
	inRequest     = ast.StringTerm("request")
	inDomain      = ast.StringTerm("domain")
	inKey         = ast.StringTerm("key")
	inUser        = ast.StringTerm("user")
	inMethod      = ast.StringTerm("method")
	inPath        = ast.StringTerm("path")
	inHost        = ast.StringTerm("host")
	inProtocol    = ast.StringTerm("protocol")
	inQuery       = ast.StringTerm("query")
	inCrossSite   = ast.StringTerm("cross_site")
	inID          = ast.StringTerm("id")
	inName        = ast.StringTerm("name")
	inDomainName  = ast.StringTerm("domain")
	inAuthorityID = ast.StringTerm("authority_id")
	inScopes      = ast.StringTerm("scopes")
	inPermissions = ast.StringTerm("permissions")
	inSource      = ast.StringTerm("source")
	inEmail       = ast.StringTerm("email")
	inSysAdmin    = ast.StringTerm("sys_admin")
	inSupport     = ast.StringTerm("support")
	inGroups      = ast.StringTerm("groups")
	inClientIP    = ast.StringTerm("client_ip")
	inAllowedNets = ast.StringTerm("allowed_cidrs")
	nullTerm      = ast.NullTerm()
)

// Value is in as the policy input, the Rego value Decide evaluates: built from its parts' terms
// where set (SetTerms).
func (in *Input) Value() ast.Value { return in.astValue() }

// astValue builds the policy input directly as an ast.Value. It is exactly
// ast.InterfaceToValue of the JSON encoding of in (nil pointers are absent keys, nil slices
// and maps are null), without the JSON round trip, since it runs on every decision.
func (in *Input) astValue() ast.Value {
	var items [4][2]*ast.Term
	items[0] = ast.Item(inRequest, ast.NewTerm(in.Request.astValue()))
	n := 1
	if d := in.Domain; d != nil {
		items[n] = ast.Item(inDomain, orBuild(in.terms.Domain, d.Term))
		n++
	}
	if k := in.Key; k != nil {
		items[n] = ast.Item(inKey, orBuild(in.terms.Key, k.Term))
		n++
	}
	if u := in.User; u != nil {
		items[n] = ast.Item(inUser, orBuild(in.terms.User, u.Term))
		n++
	}
	return ast.NewObject(items[:n]...)
}

// orBuild is t, or build() when t is nil.
func orBuild(t *ast.Term, build func() *ast.Term) *ast.Term {
	if t != nil {
		return t
	}
	return build()
}

// Term is d as the policy input's domain part.
func (d *Domain) Term() *ast.Term {
	return ast.NewTerm(ast.NewObject(
		ast.Item(inID, str(d.ID)),
		ast.Item(inName, str(d.Name)),
		ast.Item(inDomainName, str(d.Domain)),
	))
}

// Term is k as the policy input's key part.
func (k *Key) Term() *ast.Term {
	items := [...][2]*ast.Term{
		ast.Item(inID, str(k.ID)),
		ast.Item(inAuthorityID, str(k.AuthorityID)),
		ast.Item(inScopes, strs(k.Scopes)),
		ast.Item(inPermissions, str(k.Permissions)),
		ast.Item(inSource, str(k.Source)),
		{},
	}
	n := len(items) - 1
	if len(k.AllowedCIDRs) > 0 {
		items[n] = ast.Item(inAllowedNets, strs(k.AllowedCIDRs))
		n++
	}
	return ast.NewTerm(ast.NewObject(items[:n]...))
}

// Term is u as the policy input's user part.
func (u *User) Term() *ast.Term {
	return ast.NewTerm(ast.NewObject(
		ast.Item(inID, str(u.ID)),
		ast.Item(inAuthorityID, str(u.AuthorityID)),
		ast.Item(inName, str(u.Name)),
		ast.Item(inEmail, str(u.Email)),
		ast.Item(inSysAdmin, ast.InternedTerm(u.SysAdmin)),
		ast.Item(inSupport, ast.InternedTerm(u.Support)),
		ast.Item(inGroups, strs(u.Groups)),
	))
}

func (r *Request) astValue() ast.Value {
	items := [...][2]*ast.Term{
		ast.Item(inMethod, str(r.Method)),
		ast.Item(inPath, str(r.Path)),
		ast.Item(inHost, str(r.Host)),
		ast.Item(inProtocol, str(r.Protocol)),
		ast.Item(inQuery, query(r.Query)),
		ast.Item(inCrossSite, ast.InternedTerm(r.CrossSite)),
		{},
	}
	n := len(items) - 1
	if r.ClientIP != "" {
		items[n] = ast.Item(inClientIP, str(r.ClientIP))
		n++
	}
	return ast.NewObject(items[:n]...)
}

// str returns a shared term for common strings (the methods keyauthz judges, the protocols and
// key sources, and what OPA interns, such as "http"), else a new one: each new string term is
// two allocations on every decision.
func str(s string) *ast.Term {
	if t, ok := common[s]; ok {
		return t
	}
	return ast.InternedTerm(s)
}

// common are the shared terms of str.
var common = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "http", "websocket", "header", "query", "cookie"} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

func strs(ss []string) *ast.Term {
	if ss == nil {
		return nullTerm
	}
	if len(ss) == 0 {
		return ast.InternedEmptyArray
	}
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = str(s)
	}
	return ast.NewTerm(ast.NewArray(ts...))
}

func query(q map[string][]string) *ast.Term {
	if q == nil {
		return nullTerm
	}
	if len(q) == 0 {
		return ast.InternedEmptyObject
	}
	items := make([][2]*ast.Term, 0, len(q))
	for k, v := range q {
		items = append(items, ast.Item(str(k), strs(v)))
	}
	return ast.NewTerm(ast.NewObject(items...))
}

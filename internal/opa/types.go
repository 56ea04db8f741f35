package opa

// Input is the policy input (`input` in Rego), built by Go for every request.
// Its shape is the contract of policies/README.md; keep the two in step.
type Input struct {
	Request Request `json:"request"`
	// Domain is the domain record whose host equals Request.Host; nil when none does.
	Domain *Domain `json:"domain,omitempty"`
	// Key and User are set only for a valid, unexpired key.
	Key  *Key  `json:"key,omitempty"`
	User *User `json:"user,omitempty"`
}

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

// Decision is data.keyauthz.decision. The zero value is a deny.
type Decision struct {
	Allow       bool   `json:"allow"`
	Status      int    `json:"status"`
	Message     string `json:"message"`
	Route       Route  `json:"route"`
	Permissions string `json:"permissions"`
}

// Route is what the route table says about the matched route.
type Route struct {
	Resource string `json:"resource"`
	Access   string `json:"access"`
	Gate     string `json:"gate"`
}

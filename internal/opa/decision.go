package opa

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision is data.keyauthz.decision (docs/policy-contract.md#output). The zero value is a deny.
// The policy's answer is read strictly (decisionFromValue, below): anything else is a fault.
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

// Keys of the decision object, shared so that lookups do not allocate.
var (
	keyAllow       = ast.StringTerm("allow")
	keyStatus      = ast.StringTerm("status")
	keyMessage     = ast.StringTerm("message")
	keyRoute       = ast.StringTerm("route")
	keyPermissions = ast.StringTerm("permissions")
	keyResource    = ast.StringTerm("resource")
	keyAccess      = ast.StringTerm("access")
	keyGate        = ast.StringTerm("gate")
)

// decisionFromValue reads a decision object: allow (bool), status (200, 401 or 403), message
// (string), route (object whose resource, access and gate are strings when present) and
// permissions (string). Other keys are ignored. An allow must carry status 200.
func decisionFromValue(v ast.Value) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return failed, fmt.Errorf("opa: decision is a %s, want an object", ast.ValueName(v))
	}
	var d Decision
	var err error
	if d.Allow, err = boolField(obj, keyAllow); err != nil {
		return failed, err
	}
	status, err := intField(obj, keyStatus)
	if err != nil {
		return failed, err
	}
	switch status {
	case 200, 401, 403:
		d.Status = status
	default:
		return failed, fmt.Errorf("opa: decision status %d is not 200, 401 or 403", status)
	}
	if d.Allow && d.Status != 200 {
		return failed, fmt.Errorf("opa: decision allows with status %d", d.Status)
	}
	if d.Message, err = stringField(obj, keyMessage, true); err != nil {
		return failed, err
	}
	if d.Permissions, err = stringField(obj, keyPermissions, true); err != nil {
		return failed, err
	}
	rt := obj.Get(keyRoute)
	if rt == nil {
		return failed, errors.New("opa: decision has no route")
	}
	route, ok := rt.Value.(ast.Object)
	if !ok {
		return failed, fmt.Errorf("opa: decision route is a %s, want an object", ast.ValueName(rt.Value))
	}
	if d.Route.Resource, err = stringField(route, keyResource, false); err != nil {
		return failed, err
	}
	if d.Route.Access, err = stringField(route, keyAccess, false); err != nil {
		return failed, err
	}
	if d.Route.Gate, err = stringField(route, keyGate, false); err != nil {
		return failed, err
	}
	return d, nil
}

func boolField(obj ast.Object, key *ast.Term) (bool, error) {
	t := obj.Get(key)
	if t == nil {
		return false, fmt.Errorf("opa: decision has no %v", key)
	}
	b, ok := t.Value.(ast.Boolean)
	if !ok {
		return false, fmt.Errorf("opa: decision %v is a %s, want a boolean", key, ast.ValueName(t.Value))
	}
	return bool(b), nil
}

func intField(obj ast.Object, key *ast.Term) (int, error) {
	t := obj.Get(key)
	if t == nil {
		return 0, fmt.Errorf("opa: decision has no %v", key)
	}
	n, ok := t.Value.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("opa: decision %v is a %s, want a number", key, ast.ValueName(t.Value))
	}
	i, ok := n.Int()
	if !ok {
		return 0, fmt.Errorf("opa: decision %v is %v, want an integer", key, n)
	}
	return i, nil
}

// stringField reads a string member; a missing one is an error when required, else "".
func stringField(obj ast.Object, key *ast.Term, required bool) (string, error) {
	t := obj.Get(key)
	if t == nil {
		if required {
			return "", fmt.Errorf("opa: decision has no %v", key)
		}
		return "", nil
	}
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("opa: decision %v is a %s, want a string", key, ast.ValueName(t.Value))
	}
	return string(s), nil
}

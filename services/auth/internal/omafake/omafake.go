package opensrs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeOMA is a local stand-in for the OpenSRS Mail API. It checks every
// request against the documented request format (one JSON object POSTed
// to <base>/<method>, a credentials object with user and password or
// token and an optional client string, the method's required and
// optional fields with their types) and answers in the documented
// response format, errors included. A request of the wrong shape fails
// the test as well as getting OMA's answer.
type fakeOMA struct {
	t        *testing.T
	admin    string
	password string

	mu       sync.Mutex
	domains  map[string]bool
	users    map[string]string // mailbox -> password
	tokens   map[string]string // token -> mailbox
	requests []string          // method names, in order
	clients  []string          // credentials.client of each request
	failNext int               // answer the next request with this HTTP status
}

func newFakeOMA(t *testing.T, domains ...string) (*fakeOMA, *httptest.Server) {
	f := &fakeOMA{t: t, admin: "admin@example.com", password: "Adm1n-Secret!", domains: map[string]bool{},
		users: map[string]string{}, tokens: map[string]string{}}
	for _, d := range domains {
		f.domains[d] = true
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

// userAttributes are change_user attributes named in OpenSRS's
// documentation; others are answered with error 6.
var userAttributes = map[string]bool{
	"aliases": true, "allow": true, "autoresponder": true, "autoresponder_option_enddate": true,
	"autoresponder_option_interval": true, "block": true, "brand": true, "delivery_autoresponder": true,
	"delivery_forward": true, "delivery_mailbox": true, "forward_recipients": true, "name": true,
	"password": true, "quota": true, "type": true, "service_imap4": true, "service_pop3": true,
	"service_smtpin": true, "service_webmail": true,
}

// field specs: name -> JSON type ("string", "bool", "number", "object").
type spec struct{ required, optional map[string]string }

var methods = map[string]spec{
	"change_user": {
		required: map[string]string{"user": "string", "attributes": "object"},
		optional: map[string]string{"create_only": "bool"},
	},
	"generate_token": {
		required: map[string]string{"user": "string", "reason": "string"},
		optional: map[string]string{"token": "string", "oma": "bool", "duration": "number", "type": "string"},
	},
}

type omaError struct {
	num  int
	text string
}

// Documented error texts.
var (
	errCredentials = omaError{1, "Invalid credentials supplied in request."}
	errNotFound    = omaError{2, "The requested object does not exist."}
	errBadRequest  = omaError{5, "Request badly formatted (missing required field, or field is not the correct data type)."}
	errBadAttr     = omaError{6, "One or more attributes badly formatted."}
	errExists      = omaError{7, "An object with this name already exists."}
)

func (f *fakeOMA) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext != 0 {
		w.WriteHeader(f.failNext)
		f.failNext = 0
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if r.Method != http.MethodPost || !ok {
		f.t.Errorf("request %s %s: want POST /api/<method>", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	sp, known := methods[method]
	if !known {
		w.WriteHeader(http.StatusNotFound) // documented: non-existent method
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("%s: Content-Type %q", method, ct)
	}
	var body map[string]json.RawMessage
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&body); err != nil || dec.More() {
		f.t.Errorf("%s: body is not one JSON object: %v", method, err)
		w.WriteHeader(http.StatusBadRequest) // documented: badly formatted JSON
		return
	}
	f.requests = append(f.requests, method)
	if e := f.checkCredentials(method, body["credentials"]); e != nil {
		f.answer(w, *e, nil)
		return
	}
	delete(body, "credentials")
	if e := f.checkShape(method, sp, body); e != nil {
		f.answer(w, *e, nil)
		return
	}
	switch method {
	case "change_user":
		f.changeUser(w, body)
	case "generate_token":
		f.generateToken(w, body)
	}
}

func (f *fakeOMA) checkCredentials(method string, raw json.RawMessage) *omaError {
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil || c == nil {
		f.t.Errorf("%s: no credentials object", method)
		return &errBadRequest
	}
	for k, v := range c {
		if _, isString := v.(string); !isString || (k != "user" && k != "password" && k != "token" && k != "client") {
			f.t.Errorf("%s: credentials.%s is not a documented string field", method, k)
			return &errBadRequest
		}
	}
	if client, ok := c["client"].(string); ok {
		f.clients = append(f.clients, client)
	}
	if c["user"] != f.admin || c["password"] != f.password {
		return &errCredentials
	}
	return nil
}

func (f *fakeOMA) checkShape(method string, sp spec, body map[string]json.RawMessage) *omaError {
	for name, typ := range sp.required {
		v, ok := body[name]
		if !ok || jsonType(v) != typ {
			f.t.Errorf("%s: required field %s missing or not a %s", method, name, typ)
			return &errBadRequest
		}
	}
	for name, v := range body {
		if _, req := sp.required[name]; req {
			continue
		}
		typ, ok := sp.optional[name]
		if !ok || jsonType(v) != typ {
			f.t.Errorf("%s: field %s is not documented as a %s", method, name, typ)
			return &errBadRequest
		}
	}
	return nil
}

func jsonType(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func (f *fakeOMA) changeUser(w http.ResponseWriter, body map[string]json.RawMessage) {
	var user string
	var attrs map[string]json.RawMessage
	var createOnly bool
	json.Unmarshal(body["user"], &user)
	json.Unmarshal(body["attributes"], &attrs)
	json.Unmarshal(body["create_only"], &createOnly)
	for name := range attrs {
		if !userAttributes[name] {
			f.answer(w, errBadAttr, map[string]any{"hints": map[string]string{name: "unknown attribute"}})
			return
		}
	}
	_, exists := f.users[user]
	local, domain, _ := strings.Cut(user, "@")
	switch {
	case exists && createOnly:
		f.answer(w, errExists, nil)
		return
	case !exists && !f.domains[domain]:
		f.answer(w, errNotFound, nil)
		return
	}
	var pw string
	if raw, ok := attrs["password"]; ok {
		if jsonType(raw) != "string" {
			f.answer(w, errBadAttr, map[string]any{"hints": map[string]string{"password": "must be a string"}})
			return
		}
		json.Unmarshal(raw, &pw)
		l := strings.ToLower(pw)
		if strings.Contains(l, local) || strings.Contains(l, domain) || strings.ContainsAny(pw, " \"") {
			f.answer(w, errBadAttr, map[string]any{"hints": map[string]string{"password": "must not contain spaces, quotes, the user name or the domain"}})
			return
		}
	} else if !exists {
		f.answer(w, errBadAttr, map[string]any{"hints": map[string]string{"password": "required for a new user"}})
		return
	}
	if pw != "" {
		f.users[user] = pw
	}
	f.answer(w, omaError{}, nil)
}

func (f *fakeOMA) generateToken(w http.ResponseWriter, body map[string]json.RawMessage) {
	var user, typ string
	duration := 24
	json.Unmarshal(body["user"], &user)
	json.Unmarshal(body["type"], &typ)
	if raw, ok := body["duration"]; ok {
		json.Unmarshal(raw, &duration)
	}
	switch typ {
	case "", "oma", "session", "sso":
	default:
		f.answer(w, errBadRequest, nil)
		return
	}
	if _, ok := f.users[user]; !ok {
		f.answer(w, errNotFound, nil)
		return
	}
	tok := fmt.Sprintf("tok-%d-%x", len(f.tokens), len(user))
	f.tokens[tok] = user
	f.answer(w, omaError{}, map[string]any{"token": tok, "duration": duration})
}

// answer writes a documented response: 200 with success and, on failure,
// error and error_number.
func (f *fakeOMA) answer(w http.ResponseWriter, e omaError, extra map[string]any) {
	out := map[string]any{"success": e.text == ""}
	if e.text != "" {
		out["error"] = e.text
		out["error_number"] = e.num
	}
	for k, v := range extra {
		out[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (f *fakeOMA) password0(user string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pw, ok := f.users[user]
	return pw, ok
}

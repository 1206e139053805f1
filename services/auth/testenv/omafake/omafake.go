// Package omafake is a local stand-in for the OpenSRS Mail API (OMA) for
// tests: OpenSRS has no implementation one could run locally. It follows
// the documented request and response shapes only, and every behaviour it
// has carries a comment naming where it is documented (the guide at
// https://email.opensrs.guide/docs/, page and section) or saying plainly
// that it is not documented and why it is assumed.
//
// It checks every request against the documented request format (one JSON
// object POSTed to <base>/<method>, a credentials object, each method's
// documented fields with their types); a request of another shape fails
// the test as well as being answered with the documented error.
package omafake

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Admin and Password are the OMA credentials the fake accepts: Admin is
// a company administrator; DomainAdmin (same password) a domain
// administrator, who may query and change the domains that exist but not
// create one.
const (
	Admin       = "admin@example.com"
	DomainAdmin = "postmaster@example.com"
	Password    = "Adm1n-Secret!"
)

// Server is a running fake OMA; its URL plus "/api" is the base URL.
type Server struct {
	*httptest.Server
	t testing.TB

	// Hour is how long a token "hour" lasts here (default time.Hour):
	// tests shorten it to see tokens expire. Set before the first request.
	Hour time.Duration
	// OnTokens, when set, is told the login token each mailbox may use
	// now (mailbox -> token), after every change: a Dovecot target's
	// token passdb follows it (dovecottest.Server.SetTokens). Set before
	// the first request; it runs with the fake locked.
	OnTokens func(valid map[string]string)

	mu       sync.Mutex
	domains  map[string]bool
	created  []string                              // domains created by change_domain, in order
	attrs    map[string]map[string]json.RawMessage // mailbox -> attributes of its creation
	users    map[string]string                     // mailbox -> password
	spam     map[string]string                     // mailbox -> its spam folder (SetSpamFolder)
	tokens   map[string]*token                     // token -> what it is
	revoked  map[string]bool                       // mailbox -> its tokens refused (RevokeTokens)
	issued   int                                   // tokens issued so far
	timers   []*time.Timer                         // token expiries, stopped when the test ends
	requests []string                              // method names, in order
	clients  []string                              // credentials.client of each request
	failNext int                                   // answer the next request with this HTTP status
}

// Start serves a fake OMA over HTTPS that hosts domains, until the test
// ends.
func Start(t testing.TB, domains ...string) *Server {
	f := &Server{t: t, Hour: time.Hour, domains: map[string]bool{}, users: map[string]string{}, spam: map[string]string{}, tokens: map[string]*token{}, revoked: map[string]bool{}, attrs: map[string]map[string]json.RawMessage{}}
	for _, d := range domains {
		f.domains[d] = true
	}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Server.Close)
	t.Cleanup(f.stopTimers)
	return f
}

// CAPEM is the server certificate, for the client's ca_file.
func (f *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
}

// UserPassword returns the password OpenSRS would hold for mailbox.
func (f *Server) UserPassword(mailbox string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pw, ok := f.users[mailbox]
	return pw, ok
}

// CreatedDomains returns the domains change_domain created, in order.
func (f *Server) CreatedDomains() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.created...)
}

// Attribute returns the JSON of attribute name as the request that
// created mailbox sent it.
func (f *Server) Attribute(mailbox, name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.attrs[mailbox][name]
	return string(v), ok
}

// TokenUser returns the mailbox a token was issued for.
func (f *Server) TokenUser(token string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tk := f.tokens[token]; tk != nil {
		return tk.user
	}
	return ""
}

// Requests returns the methods called so far, in order.
func (f *Server) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// Clients returns credentials.client of every request.
func (f *Server) Clients() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.clients...)
}

// FailNext makes the next request get HTTP status.
func (f *Server) FailNext(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = status
}

// userAttributes are the change_user attributes this fake knows, all
// named in the attributes table of
// https://email.opensrs.guide/docs/change_user ("Attributes fields");
// others are answered with error 6, which the errors page documents for
// "an unrecognized attribute" (https://email.opensrs.guide/docs/errors,
// "API errors"). The table has more rows than these; a test that sends
// another documented attribute adds it here.
var userAttributes = map[string]bool{
	"aliases": true, "allow": true, "autoresponder": true, "autoresponder_option_enddate": true,
	"autoresponder_option_interval": true, "block": true, "brand": true, "delivery_autoresponder": true,
	"delivery_forward": true, "delivery_local": true, "forward_recipients": true, "name": true,
	"password": true, "quota": true, "type": true, "service_imap4": true, "service_pop3": true,
	"service_smtpin": true, "service_webmail": true,
}

// field specs: name -> JSON type ("string", "bool", "number", "object").
type spec struct{ required, optional map[string]string }

// methods are the request fields of each method the fake serves, from
// the "Request fields" table of the method's page.
var methods = map[string]spec{
	// https://email.opensrs.guide/docs/change_user, "Request fields for change_user".
	"change_user": {
		required: map[string]string{"user": "string", "attributes": "object"},
		optional: map[string]string{"create_only": "bool"},
	},
	// https://email.opensrs.guide/docs/get_user, "Syntax": the user.
	"get_user": {
		required: map[string]string{"user": "string"},
	},
	// https://email.opensrs.guide/docs/get_domain, "Request fields for get_domain".
	"get_domain": {
		required: map[string]string{"domain": "string"},
	},
	// https://email.opensrs.guide/docs/change_domain, "Request fields for
	// change_domain" (its syntax block says "domains", its table
	// "domain": the table is followed).
	"change_domain": {
		required: map[string]string{"domain": "string", "attributes": "object"},
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

// Error numbers and texts as documented at
// https://email.opensrs.guide/docs/errors, "API errors".
var (
	errCredentials = omaError{1, "Invalid credentials supplied in request."}
	errNotFound    = omaError{2, "The requested object does not exist."}
	errPermission  = omaError{4, "Requestor lacks permission to change one or more of the requested attributes."}
	errBadRequest  = omaError{5, "Request badly formatted (missing required field, or field is not the correct data type)."}
	errBadAttr     = omaError{6, "One or more attributes badly formatted."}
	errExists      = omaError{7, "An object with this name already exists."}
)

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext != 0 {
		w.WriteHeader(f.failNext)
		f.failNext = 0
		return
	}
	// Every request is a POST to <base URI>/<method>, the base URI
	// ending in /api (https://email.opensrs.guide/docs/sending-requests,
	// "Sending requests").
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if r.Method != http.MethodPost || !ok {
		f.t.Errorf("request %s %s: want POST /api/<method>", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	sp, known := methods[method]
	if !known {
		// 404 for a non-existent method (https://email.opensrs.guide/docs/errors, "HTTP errors").
		w.WriteHeader(http.StatusNotFound)
		return
	}
	// Not documented (the guide names no Content-Type); the adapter
	// sends application/json and the fake holds it to that.
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("%s: Content-Type %q", method, ct)
	}
	var body map[string]json.RawMessage
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&body); err != nil || dec.More() {
		f.t.Errorf("%s: body is not one JSON object: %v", method, err)
		// A request is a single JSON object (https://email.opensrs.guide/docs/sending-requests,
		// "Request format"); 400 for badly formatted JSON
		// (https://email.opensrs.guide/docs/errors, "HTTP errors").
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.requests = append(f.requests, method)
	role, e := f.checkCredentials(method, body["credentials"])
	if e != nil {
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
	case "get_user":
		f.getUser(w, body)
	case "get_domain":
		f.getDomain(w, body)
	case "change_domain":
		f.changeDomain(w, role, body)
	case "generate_token":
		f.generateToken(w, body)
	}
}

// Roles of the credentials, as the guide's "Roles" page names the
// administrator levels (https://email.opensrs.guide/docs/roles).
const (
	roleCompany = "company"
	roleDomain  = "domain"
)

// checkCredentials checks the credentials object: user, password or
// token, and client, all strings
// (https://email.opensrs.guide/docs/sending-requests, "Request format");
// wrong ones are error 1 (https://email.opensrs.guide/docs/errors, "API
// errors"). It returns the administrator's role.
func (f *Server) checkCredentials(method string, raw json.RawMessage) (string, *omaError) {
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil || c == nil {
		f.t.Errorf("%s: no credentials object", method)
		return "", &errBadRequest
	}
	for k, v := range c {
		if _, isString := v.(string); !isString || (k != "user" && k != "password" && k != "token" && k != "client") {
			f.t.Errorf("%s: credentials.%s is not a documented string field", method, k)
			return "", &errBadRequest
		}
	}
	if client, ok := c["client"].(string); ok {
		f.clients = append(f.clients, client)
	}
	if tok, ok := c["token"].(string); ok {
		// A token in place of the password: documented for type oma, and
		// for session and sso tokens issued with oma true
		// (https://email.opensrs.guide/docs/generate_token, "oma" and
		// "type"). Only the company administrator's tokens open it here.
		tk := f.tokens[tok]
		if c["user"] != Admin || tk == nil || tk.user != Admin || !tk.oma || f.expired(tk) {
			return "", &errCredentials
		}
		return roleCompany, nil
	}
	if c["password"] != Password {
		return "", &errCredentials
	}
	switch c["user"] {
	case Admin:
		return roleCompany, nil
	case DomainAdmin:
		return roleDomain, nil
	}
	return "", &errCredentials
}

func (f *Server) checkShape(method string, sp spec, body map[string]json.RawMessage) *omaError {
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

// changeUser creates or changes a user
// (https://email.opensrs.guide/docs/change_user).
func (f *Server) changeUser(w http.ResponseWriter, body map[string]json.RawMessage) {
	var user string
	var attrs map[string]json.RawMessage
	var createOnly bool
	json.Unmarshal(body["user"], &user)
	json.Unmarshal(body["attributes"], &attrs)
	json.Unmarshal(body["create_only"], &createOnly)
	// An unrecognized attribute is error 6 (https://email.opensrs.guide/docs/errors, "API errors").
	for name := range attrs {
		if !userAttributes[name] {
			f.answer(w, errBadAttr, nil)
			return
		}
	}
	_, exists := f.users[user]
	local, domain, _ := strings.Cut(user, "@")
	switch {
	case exists && createOnly:
		// create_only and an existing user: "an error will be returned"
		// (change_user, "Request fields for change_user"); error 7 is the
		// documented "An object with this name already exists" (errors
		// page). Which number exactly is not stated on change_user:
		// assumed 7, the only one that fits.
		f.answer(w, errExists, nil)
		return
	case !exists && !f.domains[domain]:
		// Not documented on change_user: a user of a domain that does not
		// exist is assumed to be error 2 ("the object ... being queried,
		// changed or deleted does not exist", errors page).
		f.answer(w, errNotFound, nil)
		return
	}
	var pw string
	if raw, ok := attrs["password"]; ok {
		if jsonType(raw) != "string" {
			f.answer(w, errBadAttr, nil)
			return
		}
		json.Unmarshal(raw, &pw)
		if refusedPassword(pw, local, domain) {
			f.answer(w, errBadAttr, nil)
			return
		}
	}
	if !exists {
		f.attrs[user] = attrs
	}
	if pw != "" || !exists {
		f.users[user] = pw
	}
	f.answer(w, omaError{}, nil)
}

// refusedPassword applies the password rules. Documented: a plain-text
// password is 1 to 54 characters
// (https://email.opensrs.guide/docs/data-constraints, "Password"). Not
// documented in the OMA guide, assumed because OpenSRS's support reports
// them (issue 14): only ASCII codes 33 and 35 to 126, and neither the
// mailbox name nor the domain in it. A refusal is error 6, "an attribute
// value that is not well formatted" (errors page); the error names no
// field (OpenSRS's answer is not documented to).
func refusedPassword(pw, local, domain string) bool {
	if n := len([]rune(pw)); n < 1 || n > 54 {
		return true
	}
	for _, r := range pw {
		if r != 33 && (r < 35 || r > 126) {
			return true
		}
	}
	l := strings.ToLower(pw)
	return strings.Contains(l, strings.ToLower(local)) || strings.Contains(l, strings.ToLower(domain))
}

// getUser answers https://email.opensrs.guide/docs/get_user, "Response":
// the user's type and metadata, of which the stand-in fills in
// special_folders.spam ("<user's spam folder name>": Spam unless
// SetSpamFolder said otherwise) and folders. A user that does not exist
// is error 2 (as for get_domain: the page describes the settable
// attributes sent then, not the error; assumed).
func (f *Server) getUser(w http.ResponseWriter, body map[string]json.RawMessage) {
	var user string
	json.Unmarshal(body["user"], &user)
	if _, ok := f.users[user]; !ok {
		f.answer(w, errNotFound, map[string]any{"settable_attributes": []string{}, "metadata": map[string]any{}})
		return
	}
	spam := f.spam[user]
	if spam == "" {
		spam = "Spam"
	}
	f.answer(w, omaError{}, map[string]any{
		"type":                "mailbox",
		"settable_attributes": []string{},
		"metadata": map[string]any{
			"special_folders": map[string]any{"spam": spam},
			"folders":         []string{"INBOX", "Sent", "Drafts", "Trash", spam},
		},
		"attributes": map[string]any{},
	})
}

// SetSpamFolder makes get_user name folder as user's spam folder.
func (f *Server) SetSpamFolder(user, folder string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spam[user] = folder
}

// getDomain answers https://email.opensrs.guide/docs/get_domain,
// "Response": success with the domain's attributes, or error 2 with the
// settable attributes and metadata "if the domain does not exist but the
// user could create it" (a domain administrator gets error 2 without
// them: not documented, assumed).
func (f *Server) getDomain(w http.ResponseWriter, body map[string]json.RawMessage) {
	var domain string
	json.Unmarshal(body["domain"], &domain)
	if !f.domains[domain] {
		f.answer(w, errNotFound, map[string]any{
			"settable_attribute": []string{},
			"metadata":           map[string]any{"options": map[string]any{}, "defaults": map[string]any{}},
		})
		return
	}
	f.answer(w, omaError{}, map[string]any{"settable_attribute": []string{}, "metadata": map[string]any{}, "attributes": map[string]any{}})
}

// changeDomain creates or changes a domain
// (https://email.opensrs.guide/docs/change_domain): create_only and an
// existing domain is an error (assumed 7, as for change_user). A domain
// administrator creating a domain is refused with error 4, "Requestor
// lacks permission" (errors page); which number OpenSRS answers then is
// not documented: assumed 4, the one permission error there is.
func (f *Server) changeDomain(w http.ResponseWriter, role string, body map[string]json.RawMessage) {
	var domain string
	var createOnly bool
	json.Unmarshal(body["domain"], &domain)
	json.Unmarshal(body["create_only"], &createOnly)
	switch {
	case f.domains[domain] && createOnly:
		f.answer(w, errExists, nil)
	case f.domains[domain]:
		f.answer(w, omaError{}, nil)
	case role != roleCompany:
		f.answer(w, errPermission, nil)
	default:
		f.domains[domain] = true
		f.created = append(f.created, domain)
		f.answer(w, omaError{}, nil)
	}
}

// token is one issued by generate_token.
type token struct {
	user    string
	typ     string
	oma     bool // usable as OMA credentials
	expires time.Time
	seq     int // order of issue
}

func (f *Server) expired(tk *token) bool { return !time.Now().Before(tk.expires) }

// generateToken follows https://email.opensrs.guide/docs/generate_token:
// user and reason required; type oma, session or sso (default session);
// duration in hours (default 24); token given or else random; the answer
// carries token and duration. A session token is valid until its
// duration ends and "can be used in place of a password" for mail
// services, which OnTokens hands to the IMAP target. Not documented, so
// the stand-in's own choices: a mailbox that does not exist is error 2;
// the newest token of a mailbox replaces the older ones at the IMAP
// target (a passwd-file holds one per user); an sso token is not limited
// to one use there.
func (f *Server) generateToken(w http.ResponseWriter, body map[string]json.RawMessage) {
	var user, typ, given string
	var oma bool
	duration := 24
	json.Unmarshal(body["user"], &user)
	json.Unmarshal(body["type"], &typ)
	json.Unmarshal(body["token"], &given)
	json.Unmarshal(body["oma"], &oma)
	if raw, ok := body["duration"]; ok {
		json.Unmarshal(raw, &duration)
	}
	switch typ {
	case "":
		typ = "session"
	case "oma", "session", "sso":
	default:
		f.answer(w, errBadRequest, nil)
		return
	}
	if _, ok := f.users[user]; !ok && user != Admin {
		f.answer(w, errNotFound, nil)
		return
	}
	tok := given
	if tok == "" {
		b := make([]byte, 24)
		rand.Read(b)
		tok = base64.RawURLEncoding.EncodeToString(b)
	}
	hour := f.Hour
	if hour <= 0 {
		hour = time.Hour
	}
	life := time.Duration(duration) * hour
	f.tokens[tok] = &token{user: user, typ: typ, oma: oma || typ == "oma", expires: time.Now().Add(life), seq: f.issued}
	f.issued++
	f.timers = append(f.timers, time.AfterFunc(life, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.publishTokens()
	}))
	f.publishTokens()
	f.answer(w, omaError{}, map[string]any{"token": tok, "duration": duration})
}

// publishTokens tells OnTokens the newest unexpired mail-login token of
// each mailbox (f.mu held).
func (f *Server) publishTokens() {
	if f.OnTokens == nil {
		return
	}
	newest := map[string]*token{}
	valid := map[string]string{}
	for tok, tk := range f.tokens {
		if tk.typ == "oma" || f.expired(tk) || f.revoked[tk.user] {
			continue
		}
		if cur := newest[tk.user]; cur == nil || tk.seq > cur.seq {
			newest[tk.user], valid[tk.user] = tk, tok
		}
	}
	f.OnTokens(valid)
}

// RevokeTokens makes every token of mailbox stop working at the IMAP
// target, as a token revoked or expired early would, and keeps tokens
// minted for it later from working (refuse: true) or lets them work
// again (refuse: false).
func (f *Server) RevokeTokens(mailbox string, refuse bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tk := range f.tokens {
		if tk.user == mailbox {
			tk.expires = time.Now()
		}
	}
	f.revoked[mailbox] = refuse
	f.publishTokens()
}

// IssuedTokens returns every token generate_token issued for mailbox.
func (f *Server) IssuedTokens(mailbox string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for tok, tk := range f.tokens {
		if tk.user == mailbox {
			out = append(out, tok)
		}
	}
	return out
}

func (f *Server) stopTimers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tm := range f.timers {
		tm.Stop()
	}
	f.OnTokens = nil
}

// answer writes a documented response: 200 with a JSON object holding
// success and, on failure, error and error_number
// (https://email.opensrs.guide/docs/sending-requests, "Response format";
// https://email.opensrs.guide/docs/errors, "HTTP errors"), plus the
// method's documented result fields in extra.
func (f *Server) answer(w http.ResponseWriter, e omaError, extra map[string]any) {
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

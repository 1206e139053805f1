// Package omafake is a local stand-in for the OpenSRS Mail API (OMA) for
// tests: OpenSRS has no implementation one could run locally. It checks
// every request against the documented request format (one JSON object
// POSTed to <base>/<method>, a credentials object with user and password
// or token and an optional client string, each method's required and
// optional fields with their types) and answers in the documented
// response format, errors included: HTTP 404 for an unknown method, 400
// for bad JSON, and success false with error_number 1 (credentials), 2
// (no such object), 5 (badly formatted request), 6 (bad attribute, with
// hints) and 7 (exists). A request of the wrong shape also fails the test.
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

// Admin and Password are the OMA credentials the fake accepts.
const (
	Admin    = "admin@example.com"
	Password = "Adm1n-Secret!"
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
	users    map[string]string // mailbox -> password
	tokens   map[string]*token // token -> what it is
	revoked  map[string]bool   // mailbox -> its tokens refused (RevokeTokens)
	issued   int               // tokens issued so far
	timers   []*time.Timer     // token expiries, stopped when the test ends
	requests []string          // method names, in order
	clients  []string          // credentials.client of each request
	failNext int               // answer the next request with this HTTP status
}

// Start serves a fake OMA over HTTPS that hosts domains, until the test
// ends.
func Start(t testing.TB, domains ...string) *Server {
	f := &Server{t: t, Hour: time.Hour, domains: map[string]bool{}, users: map[string]string{}, tokens: map[string]*token{}, revoked: map[string]bool{}}
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

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
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

func (f *Server) checkCredentials(method string, raw json.RawMessage) *omaError {
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
	if tok, ok := c["token"].(string); ok {
		// A token in place of the password: documented for type oma, and
		// for session and sso tokens issued with oma true
		// (https://email.opensrs.guide/docs/generate_token, "oma" and
		// "type"). The stand-in serves one administrator, so only that
		// one's tokens open it.
		tk := f.tokens[tok]
		if c["user"] != Admin || tk == nil || tk.user != Admin || !tk.oma || f.expired(tk) {
			return &errCredentials
		}
		return nil
	}
	if c["user"] != Admin || c["password"] != Password {
		return &errCredentials
	}
	return nil
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

func (f *Server) changeUser(w http.ResponseWriter, body map[string]json.RawMessage) {
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

// answer writes a documented response: 200 with success and, on failure,
// error and error_number.
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

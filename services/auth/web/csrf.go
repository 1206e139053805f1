package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// csrfField is the form field carrying the token.
const csrfField = "csrf_token"

// The token is a random value both in a cookie and in the form (the
// double-submit pattern): another site can make a browser send the
// cookie but can neither read it nor, with a __Host- name over HTTPS,
// plant one.
func (s *Server) csrfCookieName() string {
	if s.Secure {
		return "__Host-mf_csrf"
	}
	return "mf_csrf"
}

// csrfToken returns the request's token, issuing a cookie with a new one
// when it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(s.csrfCookieName()); err == nil && validToken(c.Value) {
		return c.Value
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     s.csrfCookieName(),
		Value:    tok,
		Path:     "/",
		HttpOnly: true,
		Secure:   s.Secure,
		SameSite: http.SameSiteStrictMode,
	})
	return tok
}

func validToken(t string) bool {
	b, err := base64.RawURLEncoding.DecodeString(t)
	return err == nil && len(b) == 32
}

// csrfValid checks the form's token against the cookie in constant time.
// The form must have been parsed.
func (s *Server) csrfValid(r *http.Request) bool {
	c, err := r.Cookie(s.csrfCookieName())
	if err != nil || !validToken(c.Value) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue(csrfField))) == 1
}

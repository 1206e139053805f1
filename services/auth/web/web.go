// Package web is the auth service's HTTP front: the sign-in page with the
// password-update notice, the change-password page (the "special URL"),
// and the same two operations as a JSON API for other front ends. It adds
// what a page taking passwords needs: CSRF tokens, cross-origin
// protection, rate-limit answers with Retry-After, bounded inputs,
// security headers and TLS.
package web

import (
	"context"
	"embed"
	"net/http"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/signin"
)

//go:embed assets
var assets embed.FS

// maxBody bounds a request body: two passwords, an address and a token
// fit many times over.
const maxBody = 16 << 10

// Authenticator is what the pages and the API call.
type Authenticator interface {
	Login(ctx context.Context, email, password, client string) (signin.Result, error)
	ChangePassword(ctx context.Context, r signin.ChangeRequest) (signin.Result, error)
}

// Server serves the pages and the API.
type Server struct {
	Auth Authenticator
	// PolicyText describes the password rules ("10 to 128 characters,
	// with ...").
	PolicyText string
	Log        zerolog.Logger
	// TrustedProxies may name the client in X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// Secure marks the service as reached over HTTPS (directly or through
	// a TLS proxy): cookies get Secure and a __Host- name, and HSTS is sent.
	Secure bool
	// RequestTimeout bounds the work of one request.
	RequestTimeout time.Duration
}

// Handler returns the service's routes with all protections applied.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /static/style.css", s.static("assets/style.css", "text/css; charset=utf-8"))
	p := &pageHandler{s: s, pages: parsePages()}
	mux.HandleFunc("GET /login", p.showLogin)
	mux.HandleFunc("POST /login", p.submitLogin)
	mux.HandleFunc("GET /password", p.showPassword)
	mux.HandleFunc("POST /password", p.submitPassword)
	mux.HandleFunc("POST /api/v1/login", s.apiLogin)
	mux.HandleFunc("POST /api/v1/password", s.apiPassword)

	// Browsers tell cross-site requests apart (Sec-Fetch-Site, Origin):
	// refuse them on every unsafe method, the JSON API included.
	cop := http.NewCrossOriginProtection()
	var h http.Handler = cop.Handler(mux)
	h = s.bounded(h)
	h = s.headers(h)
	return s.logged(h)
}

func (s *Server) static(name, contentType string) http.HandlerFunc {
	body, err := assets.ReadFile(name)
	if err != nil {
		panic("web: missing embedded asset " + name) // a build defect, caught by any test
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(body)
	}
}

// bounded limits body size and request time.
func (s *Server) bounded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if s.RequestTimeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), s.RequestTimeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

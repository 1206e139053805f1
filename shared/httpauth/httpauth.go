// Package httpauth guards mailferry's HTTP listeners (metrics, dashboard)
// with basic authentication: every listener requires it.
package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// Basic serves next only to requests carrying user and password, compared
// in constant time (of hashes, so their lengths do not show either);
// others get 401 with a challenge for realm.
func Basic(realm, user, password string, next http.Handler) http.Handler {
	wantUser, wantPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	challenge := `Basic realm="` + realm + `", charset="UTF-8"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPassword := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:]) != 1 {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

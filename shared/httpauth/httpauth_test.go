package httpauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOnlyTheRightUserAndPasswordReachTheHandler(t *testing.T) {
	h := Basic("test", "ops", "s3cret", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("in")) }))
	tests := []struct {
		name     string
		user, pw string
		send     bool
		want     int
	}{
		{"none", "", "", false, http.StatusUnauthorized},
		{"wrong password", "ops", "s3cre", true, http.StatusUnauthorized},
		{"password with a suffix", "ops", "s3cretx", true, http.StatusUnauthorized},
		{"wrong user", "root", "s3cret", true, http.StatusUnauthorized},
		{"empty credentials", "", "", true, http.StatusUnauthorized},
		{"right ones", "ops", "s3cret", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.send {
				r.SetBasicAuth(tt.user, tt.pw)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if c := w.Header().Get("WWW-Authenticate"); tt.want == http.StatusUnauthorized && !strings.HasPrefix(c, `Basic realm="test"`) {
				t.Errorf("challenge %q", c)
			}
			if tt.want == http.StatusOK && w.Body.String() != "in" {
				t.Errorf("body %q", w.Body.String())
			}
		})
	}
}

package web

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"

	"github.com/mailferry/mailferry/services/auth/signin"
)

// changePasswordPath is where a user is sent to update a password.
const changePasswordPath = "/password"

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type passwordRequest struct {
	Email           string `json:"email"`
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// loginResponse is the 200 answer of both API calls.
type loginResponse struct {
	signin.Result
	ChangePasswordURL string `json:"change_password_url,omitempty"`
}

type errorResponse struct {
	Error  string   `json:"error"`
	Policy []string `json:"policy,omitempty"`
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	res, err := s.Auth.Login(r.Context(), req.Email, req.Password, s.client(r))
	if err != nil {
		writeError(w, classify(err))
		return
	}
	out := loginResponse{Result: res}
	if res.PasswordUpdateRequired {
		out.ChangePasswordURL = changePasswordPath
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiPassword(w http.ResponseWriter, r *http.Request) {
	var req passwordRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	res, err := s.Auth.ChangePassword(r.Context(), signin.ChangeRequest{
		Email: req.Email, CurrentPassword: req.CurrentPassword, NewPassword: req.NewPassword, Client: s.client(r),
	})
	if err != nil {
		writeError(w, classify(err))
		return
	}
	writeJSON(w, http.StatusOK, loginResponse{Result: res})
}

// decodeJSON reads exactly one JSON object of known fields; it has
// answered when it returns false. Requiring application/json also keeps
// plain HTML forms of other sites out.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, failure{status: http.StatusUnsupportedMediaType, msg: "Send the request as application/json."})
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, failure{status: http.StatusRequestEntityTooLarge, msg: "The request is too large."})
			return false
		}
		writeError(w, failure{status: http.StatusBadRequest, msg: "The request is not a JSON object with the documented fields."})
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, f failure) {
	f.setRetryAfter(w)
	writeJSON(w, f.status, errorResponse{Error: f.msg, Policy: f.reasons})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

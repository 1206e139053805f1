package web

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/signin"
)

// Page templates, each the layout plus its content.
const (
	pageLogin    = "login.html"
	pageNotice   = "notice.html"
	pagePassword = "password.html"
	pageDone     = "done.html"
	pageMessage  = "message.html"
)

func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, p := range []string{pageLogin, pageNotice, pagePassword, pageDone, pageMessage} {
		out[p] = template.Must(template.ParseFS(assets, "assets/layout.html", "assets/"+p))
	}
	return out
}

// view is what every page template reads. It never holds a password.
type view struct {
	Title          string
	Error          string
	Reasons        []string
	CSRF           string
	Email          string
	MaxEmail       int
	MaxPassword    int
	Policy         string
	UpdateRequired bool
	Back           string
}

type pageHandler struct {
	s     *Server
	pages map[string]*template.Template
}

func (p *pageHandler) view(title string) view {
	return view{Title: title, MaxEmail: account.MaxEmailLength, MaxPassword: signin.MaxPasswordBytes, Policy: p.s.PolicyText}
}

// render writes a page with status; it renders into a buffer first so a
// template error becomes a clean 500.
func (p *pageHandler) render(w http.ResponseWriter, status int, page string, v view) {
	var b bytes.Buffer
	if err := p.pages[page].ExecuteTemplate(&b, "layout", v); err != nil {
		p.s.Log.Error().Err(err).Str("page", page).Msg("render page")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (p *pageHandler) showLogin(w http.ResponseWriter, r *http.Request) {
	v := p.view("Sign in")
	v.CSRF = p.s.csrfToken(w, r)
	p.render(w, http.StatusOK, pageLogin, v)
}

func (p *pageHandler) showPassword(w http.ResponseWriter, r *http.Request) {
	v := p.view("Change your password")
	v.CSRF = p.s.csrfToken(w, r)
	p.render(w, http.StatusOK, pagePassword, v)
}

// form parses a posted form and checks its CSRF token; it has answered
// when it returns false.
func (p *pageHandler) form(w http.ResponseWriter, r *http.Request, back string) bool {
	if err := r.ParseForm(); err != nil {
		status, v := http.StatusBadRequest, p.view("Request not understood")
		v.Error, v.Back = "The form could not be read. Please fill it in again.", back
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			status, v.Title = http.StatusRequestEntityTooLarge, "Request too large"
			v.Error = "The form is too large to be read. Please fill it in again."
		}
		p.render(w, status, pageMessage, v)
		return false
	}
	if !p.s.csrfValid(r) {
		p.s.Log.Warn().Str("path", r.URL.Path).Str("client", p.s.client(r)).Msg("form without a valid CSRF token")
		v := p.view("Page expired")
		v.Error, v.Back = "This form has expired or did not come from this site. Please open it again.", back
		p.render(w, http.StatusForbidden, pageMessage, v)
		return false
	}
	return true
}

func (p *pageHandler) submitLogin(w http.ResponseWriter, r *http.Request) {
	if !p.form(w, r, "/login") {
		return
	}
	email := r.PostFormValue("email")
	res, err := p.s.Auth.Login(r.Context(), email, r.PostFormValue("password"), p.s.client(r))
	if err != nil {
		f := classify(err)
		f.setRetryAfter(w)
		v := p.view("Sign in")
		v.CSRF, v.Email, v.Error, v.Reasons = p.s.csrfToken(w, r), limitEcho(email), f.msg, f.reasons
		p.render(w, f.status, pageLogin, v)
		return
	}
	v := p.view("Signed in")
	if res.PasswordUpdateRequired {
		v.Title = "Update your password"
	}
	v.Email, v.UpdateRequired = res.Email, res.PasswordUpdateRequired
	p.render(w, http.StatusOK, pageNotice, v)
}

func (p *pageHandler) submitPassword(w http.ResponseWriter, r *http.Request) {
	if !p.form(w, r, "/password") {
		return
	}
	email := r.PostFormValue("email")
	fail := func(f failure) {
		f.setRetryAfter(w)
		v := p.view("Change your password")
		v.CSRF, v.Email, v.Error, v.Reasons = p.s.csrfToken(w, r), limitEcho(email), f.msg, f.reasons
		p.render(w, f.status, pagePassword, v)
	}
	if r.PostFormValue("new_password") != r.PostFormValue("confirm_password") {
		fail(failure{status: http.StatusUnprocessableEntity, msg: "The new password and its confirmation are not the same."})
		return
	}
	res, err := p.s.Auth.ChangePassword(r.Context(), signin.ChangeRequest{
		Email:           email,
		CurrentPassword: r.PostFormValue("current_password"),
		NewPassword:     r.PostFormValue("new_password"),
		Client:          p.s.client(r),
	})
	if err != nil {
		fail(classify(err))
		return
	}
	v := p.view("Password changed")
	v.Email = res.Email
	p.render(w, http.StatusOK, pageDone, v)
}

// limitEcho keeps a re-displayed address within the field's length.
func limitEcho(email string) string {
	if len(email) > account.MaxEmailLength {
		return ""
	}
	return email
}

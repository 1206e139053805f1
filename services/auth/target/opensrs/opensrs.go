// Package opensrs is the target adapter for OpenSRS Hosted Email: a client
// of the OpenSRS Mail API (OMA), which takes each request as one JSON
// object POSTed over HTTPS to <base URL>/<method>, authenticated by a
// credentials object, and answers 200 with {"success": ..., "error":
// ..., "error_number": ...}.
//
// The adapter creates each domain that is not there yet (get_domain, then
// change_domain with create_only: this needs a company administrator),
// then the mailboxes (change_user with create_only), sets the password a
// user chose (change_user; OpenSRS hashes it in its own scheme) and mints
// login tokens for the migration (generate_token).
//
// Answers are read as documented: success, error and error_number
// strictly, the documented result fields of the method strictly, and
// anything else (such as an undocumented hints object) tolerantly: a field
// of an unexpected shape is ignored, never a reason to lose error_number.
// Where each behaviour is documented: services/auth/README.md, "OpenSRS".
package opensrs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"
)

// Documented OMA error numbers this adapter acts on.
const (
	ErrNumServer       = 0
	ErrNumCredentials  = 1
	ErrNumNotFound     = 2
	ErrNumAlias        = 3
	ErrNumPermission   = 4
	ErrNumBadRequest   = 5
	ErrNumBadAttribute = 6
	ErrNumExists       = 7
)

const (
	maxResponseBytes = 1 << 20
	tokenReason      = "mailferry migration login"
	tokenType        = "session"
)

// Error is an OMA answer with success false.
type Error struct {
	Method string
	Number int
	// Text is OpenSRS's explanation; Hints names offending fields (an
	// undocumented field, kept when it is an object of strings). Neither
	// repeats a password.
	Text  string
	Hints map[string]string
}

// Error names the method, OpenSRS's error number, text and hints.
func (e *Error) Error() string {
	s := fmt.Sprintf("opensrs %s: error %d: %s", e.Method, e.Number, e.Text)
	for k, v := range e.Hints {
		s += fmt.Sprintf(" (%s: %s)", k, v)
	}
	return s
}

// Client calls the OMA as one administrator.
type Client struct {
	// BaseURL is e.g. https://admin.a.hostedemail.com/api.
	BaseURL  string
	User     string
	Password string
	// ClientID goes into credentials.client for OpenSRS's logs.
	ClientID string
	HTTP     *http.Client
	// TokenHours is the lifetime of migration tokens.
	TokenHours int
	// TokenHour is how long one of OpenSRS's token hours lasts: zero for
	// time.Hour; tests against the stand-in shorten it.
	TokenHour time.Duration
}

// New builds a client from the configuration, reading the password
// (config.Secret refuses a password file that group or others may read,
// naming the file and its mode).
func New(c authconfig.Auth) (*Client, error) {
	pw, err := c.OpenSRSPassword()
	if err != nil {
		return nil, fmt.Errorf("opensrs password: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.OpenSRS.CAFile != "" {
		pem, err := os.ReadFile(c.OpenSRS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("opensrs ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("opensrs ca_file %s: no PEM certificates", c.OpenSRS.CAFile)
		}
		tc.RootCAs = pool
	}
	return &Client{
		BaseURL:    strings.TrimRight(c.OpenSRS.URL, "/"),
		User:       c.OpenSRS.User,
		Password:   pw,
		ClientID:   c.OpenSRS.Client,
		TokenHours: c.OpenSRS.TokenHours,
		HTTP: &http.Client{
			Timeout:   c.OpenSRS.Timeout.Std(),
			Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment},
			// A redirect would resend the credentials elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Name is the provider's name in events.
func (c *Client) Name() string { return authconfig.ProviderOpenSRS }

type credentials struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Client   string `json:"client,omitempty"`
}

// response is the documented common part of every OMA answer
// (https://email.opensrs.guide/docs/sending-requests, "Response format").
type response struct {
	Success     *bool  `json:"success"`
	Error       string `json:"error"`
	ErrorNumber int    `json:"error_number"`
}

// decodeAnswer reads the documented common fields of an answer strictly
// (success a boolean, error a string, error_number a number) and the
// undocumented hints tolerantly: kept when it is an object, its string
// values only; any other shape is ignored.
func decodeAnswer(method string, data []byte) (response, map[string]string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return response{}, nil, fmt.Errorf("opensrs %s: answer is not an OMA response (not a JSON object)", method)
	}
	var r response
	for name, dst := range map[string]any{"success": &r.Success, "error": &r.Error, "error_number": &r.ErrorNumber} {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return response{}, nil, fmt.Errorf("opensrs %s: answer is not an OMA response (%s is not of the documented type)", method, name)
		}
	}
	if r.Success == nil {
		return response{}, nil, fmt.Errorf("opensrs %s: answer is not an OMA response (no success)", method)
	}
	var loose map[string]any
	var hints map[string]string
	if json.Unmarshal(fields["hints"], &loose) == nil {
		for k, v := range loose {
			if s, ok := v.(string); ok {
				if hints == nil {
					hints = map[string]string{}
				}
				hints[k] = s
			}
		}
	}
	return r, hints, nil
}

// call POSTs body (with credentials added) to method and decodes the
// answer into out, which must embed response and may declare the
// method's documented result fields: those are decoded strictly, others
// ignored.
func (c *Client) call(ctx context.Context, method string, body map[string]any, out any) error {
	body["credentials"] = credentials{User: c.User, Password: c.Password, Client: c.ClientID}
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("opensrs %s: encode: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/"+method, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("opensrs %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := c.HTTP.Do(req)
	if err != nil {
		// url.Error names the URL only; the body with the password is not in it.
		return fmt.Errorf("opensrs %s: %w", method, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("opensrs %s: read answer: %w", method, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("opensrs %s: HTTP %s", method, res.Status)
	}
	common, hints, err := decodeAnswer(method, data)
	if err != nil {
		return err
	}
	if !*common.Success {
		return &Error{Method: method, Number: common.ErrorNumber, Text: common.Error, Hints: hints}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("opensrs %s: decode answer: %w", method, err)
		}
	}
	return nil
}

// SpamFolder returns the spam folder OpenSRS keeps for user
// (https://email.opensrs.guide/docs/get_user, "Response":
// metadata.special_folders.spam, "<user's spam folder name>"), "" when
// the answer does not say. The rest of the answer is not read.
func (c *Client) SpamFolder(ctx context.Context, user string) (string, error) {
	var out struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := c.call(ctx, "get_user", map[string]any{"user": user}, &out); err != nil {
		return "", err
	}
	var md struct {
		SpecialFolders struct {
			Spam any `json:"spam"`
		} `json:"special_folders"`
	}
	if json.Unmarshal(out.Metadata, &md) != nil {
		return "", nil // another shape: not documented, not guessed
	}
	spam, _ := md.SpecialFolders.Spam.(string)
	return spam, nil
}

// ChangeUser creates or changes user with attributes; with createOnly an
// existing user is left alone and error 7 comes back.
func (c *Client) ChangeUser(ctx context.Context, user string, attributes map[string]any, createOnly bool) error {
	body := map[string]any{"user": user, "attributes": attributes}
	if createOnly {
		body["create_only"] = true
	}
	return c.call(ctx, "change_user", body, nil)
}

// Token is a generated login token.
type Token struct {
	Token string `json:"token"`
	// Hours the token is valid.
	Hours int `json:"duration"`
}

// GenerateToken mints a token of type tokenType (oma, session or sso) for
// user, valid hours hours.
func (c *Client) GenerateToken(ctx context.Context, user, reason, tokenType string, hours int) (Token, error) {
	var out struct {
		response
		Token
	}
	body := map[string]any{"user": user, "reason": reason, "type": tokenType, "duration": hours}
	if err := c.call(ctx, "generate_token", body, &out); err != nil {
		return Token{}, err
	}
	if out.Token.Token == "" {
		return Token{}, errors.New("opensrs generate_token: answer without token")
	}
	return out.Token, nil
}

// ErrNeedsCompanyAdmin is the reason a domain could not be created: the
// configured OMA user lacks permission (error 4), as a domain
// administrator does. Only a company administrator creates domains.
var ErrNeedsCompanyAdmin = errors.New("creating a domain needs a company-level OMA administrator (opensrs.user); the configured user lacks permission (OMA error 4)")

// GetDomain reports whether domain exists at OpenSRS (get_domain: error
// 2 is "does not exist").
func (c *Client) GetDomain(ctx context.Context, domain string) (bool, error) {
	err := c.call(ctx, "get_domain", map[string]any{"domain": domain}, nil)
	var oe *Error
	if errors.As(err, &oe) && oe.Number == ErrNumNotFound {
		return false, nil
	}
	return err == nil, err
}

// ChangeDomain creates or changes domain with attributes; with
// createOnly an existing domain is left alone and error 7 comes back.
func (c *Client) ChangeDomain(ctx context.Context, domain string, attributes map[string]any, createOnly bool) error {
	body := map[string]any{"domain": domain, "attributes": attributes}
	if createOnly {
		body["create_only"] = true
	}
	return c.call(ctx, "change_domain", body, nil)
}

// EnsureDomain makes domain exist: get_domain, and when it is absent
// change_domain with create_only (as OpenSRS's own WHMCS module does);
// error 7 (it appeared meanwhile) counts as done. Permission refused
// (error 4) is ErrNeedsCompanyAdmin, naming the configured user, never
// the password.
func (c *Client) EnsureDomain(ctx context.Context, domain string) error {
	exists, err := c.GetDomain(ctx, domain)
	if err == nil && !exists {
		// No attributes: the domain takes the company's defaults.
		err = c.ChangeDomain(ctx, domain, map[string]any{}, true)
		if isNumber(err, ErrNumExists) {
			err = nil
		}
	}
	if isNumber(err, ErrNumPermission) {
		return fmt.Errorf("domain %s: %w (user %s)", domain, ErrNeedsCompanyAdmin, c.User)
	}
	if err != nil {
		return fmt.Errorf("domain %s: %w", domain, err)
	}
	return nil
}

func isNumber(err error, n int) bool {
	var oe *Error
	return errors.As(err, &oe) && oe.Number == n
}

// mailboxAttributes are the attributes of a new mailbox: a random
// password nobody knows (the mailbox is unusable until its user sets
// one) and IMAP enabled explicitly, so that a company or domain default
// of service_imap4 disabled cannot stop the migration from writing to it.
// Everything else (quota, delivery, POP3, webmail, SMTP) is left to the
// company's and domain's defaults: the migration needs none of it, and
// the hosting company configures those at OpenSRS.
func mailboxAttributes(email string) map[string]any {
	return map[string]any{"password": unusablePassword(email), "service_imap4": "enabled"}
}

// CreateMailboxes creates each domain that does not exist yet
// (EnsureDomain, once per domain and call), then each mailbox that does
// not exist yet, with mailboxAttributes. errs[i] is the outcome for
// emails[i]; a domain that could not be created fails its mailboxes.
func (c *Client) CreateMailboxes(ctx context.Context, emails []string) []error {
	errs := make([]error, len(emails))
	domains := map[string]error{}
	for i, e := range emails {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		_, domain, _ := strings.Cut(e, "@")
		derr, seen := domains[domain]
		if !seen {
			derr = c.EnsureDomain(ctx, domain)
			domains[domain] = derr
		}
		if derr != nil {
			errs[i] = derr
			continue
		}
		err := c.ChangeUser(ctx, e, mailboxAttributes(e), true)
		if isNumber(err, ErrNumExists) {
			err = nil
		}
		errs[i] = err
	}
	return errs
}

// SetPassword gives user the password they chose. OpenSRS refusing it
// (error 6 on the password) is a *RefusedError the user can act on.
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	err := c.ChangeUser(ctx, user, map[string]any{"password": password}, false)
	var oe *Error
	if errors.As(err, &oe) && oe.Number == ErrNumBadAttribute {
		reason := oe.Hints["password"]
		if reason == "" {
			reason = "is not accepted by the new provider"
		}
		return &RefusedError{Reason: reason}
	}
	return err
}

// RefusedError is the provider turning a password down; Reason is safe
// to show the user (OpenSRS's hint, never the password).
type RefusedError struct{ Reason string }

// Error phrases the refusal as a sentence about the password.
func (e *RefusedError) Error() string { return "the new password " + e.Reason }

// Refusal is what the user is told.
func (e *RefusedError) Refusal() string { return e.Reason }

// MintToken returns a session token with which the migration logs in to
// user's mailbox over IMAP, and how long it is valid. A session token is
// "valid until the duration of the token expires" and can be used for
// mail services (https://email.opensrs.guide/docs/generate_token, "type").
func (c *Client) MintToken(ctx context.Context, user string) (string, time.Duration, error) {
	t, err := c.GenerateToken(ctx, user, tokenReason, tokenType, c.TokenHours)
	if err != nil {
		return "", 0, err
	}
	hour := time.Hour
	if c.TokenHour > 0 {
		hour = c.TokenHour
	}
	// The answer's duration is the lifetime OpenSRS granted, in hours.
	return t.Token, time.Duration(t.Hours) * hour, nil
}

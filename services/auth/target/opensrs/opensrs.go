// Package opensrs is the target adapter for OpenSRS Hosted Email: a client
// of the OpenSRS Mail API (OMA), which takes each request as one JSON
// object POSTed over HTTPS to <base URL>/<method>, authenticated by a
// credentials object, and answers 200 with {"success": ..., "error":
// ..., "error_number": ...}.
//
// The adapter creates mailboxes (change_user with create_only), sets the
// password a user chose (change_user; OpenSRS hashes it in its own scheme)
// and mints login tokens for the migration (generate_token).
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
	// Text is OpenSRS's explanation; Hints names offending fields. Neither
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

// response is the common part of every OMA answer.
type response struct {
	Success     *bool             `json:"success"`
	Error       string            `json:"error"`
	ErrorNumber int               `json:"error_number"`
	Hints       map[string]string `json:"hints"`
}

// call POSTs body (with credentials added) to method and decodes the
// answer into out, which must embed response.
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
	var common response
	if err := json.Unmarshal(data, &common); err != nil || common.Success == nil {
		return fmt.Errorf("opensrs %s: answer is not an OMA response", method)
	}
	if !*common.Success {
		return &Error{Method: method, Number: common.ErrorNumber, Text: common.Error, Hints: common.Hints}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("opensrs %s: decode answer: %w", method, err)
		}
	}
	return nil
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

// CreateMailboxes creates each mailbox that does not exist yet, with a
// random password nobody knows: it is unusable until the user sets one.
// errs[i] is the outcome for emails[i].
func (c *Client) CreateMailboxes(ctx context.Context, emails []string) []error {
	errs := make([]error, len(emails))
	for i, e := range emails {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		err := c.ChangeUser(ctx, e, map[string]any{"password": unusablePassword(e)}, true)
		var oe *Error
		if errors.As(err, &oe) && oe.Number == ErrNumExists {
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

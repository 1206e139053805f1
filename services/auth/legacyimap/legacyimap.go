// Package legacyimap proves a user's password by logging in to the legacy
// IMAP server as that user: during the migration the old platform still
// runs, and a successful LOGIN there is proof for a user whose hash was
// not exported.
package legacyimap

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
)

// Verifier logs in to one IMAP server, at most Server.Connections at once.
type Verifier struct {
	server config.IMAP
	slots  chan struct{}
}

// New returns a verifier for server.
func New(server config.IMAP) *Verifier {
	return &Verifier{server: server, slots: make(chan struct{}, max(server.Connections, 1))}
}

// Verify reports whether the server accepts user's password. A refusal is
// (false, nil); an error means the server could not be asked, which says
// nothing about the password.
func (v *Verifier) Verify(ctx context.Context, user, password string) (bool, error) {
	select {
	case v.slots <- struct{}{}:
		defer func() { <-v.slots }()
	case <-ctx.Done():
		return false, fmt.Errorf("verify %s at legacy IMAP: %w", user, ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, v.server.CommandTimeout.Std())
	defer cancel()
	c, err := imapdial.Dial(ctx, v.server, imapdial.Credentials{User: user, Password: password}, nil)
	if refused(err) {
		return false, nil
	}
	if err != nil {
		// imapdial's errors name the user and server, never the password.
		return false, fmt.Errorf("verify at legacy IMAP: %w", err)
	}
	_ = c.Logout().Wait()
	_ = c.Close()
	return true, nil
}

// refused tells a refusal of the credentials from a failure to ask: a
// tagged NO to LOGIN, with or without a response code.
func refused(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, imapdial.ErrLoginRefused) {
		return true
	}
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo
}

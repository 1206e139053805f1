package opensrs

import (
	"fmt"

	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/shared/config"
)

// NewMinter builds the client with which the loader mints its target
// login tokens (target.auth: token), from target.opensrs of cfg: the OMA
// URL, the administrator and its password_file (refused when group or
// others may read it), the token lifetime. Its MintToken asks generate_token for a session token, which
// OpenSRS documents as usable in place of the user's password
// (https://email.opensrs.guide/docs/generate_token, "type").
func NewMinter(cfg *config.Config) (*Client, error) {
	o := cfg.Target.OpenSRS
	pw, err := cfg.OpenSRSPassword()
	if err != nil {
		return nil, fmt.Errorf("target.opensrs password: %w", err)
	}
	c, err := New(authconfig.Auth{OpenSRS: authconfig.OpenSRS{
		URL: o.URL, User: o.User, CAFile: o.CAFile, Client: o.Client,
		Timeout: o.Timeout, TokenHours: o.TokenHours,
		// New reads the password itself; the loader's was read above.
		PasswordFile: o.PasswordFile,
	}})
	if err != nil {
		return nil, err
	}
	c.Password = pw
	return c, nil
}

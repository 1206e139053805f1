package dovecottest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

func (s *Server) tokensPath() string { return filepath.Join(s.Dir, "tokens") }

// SetTokens replaces the login tokens (login name to token) the second
// passdb accepts (Options.TokenPasswords); a user missing from tokens
// has none. Like AddUsers it returns once Dovecot sees the new file.
func (s *Server) SetTokens(tokens map[string]string) error {
	if !s.opts.TokenPasswords {
		return errors.New("set tokens: the server was started without TokenPasswords")
	}
	entries := make(map[string]string, len(tokens))
	for u, tok := range tokens {
		if err := validUserName(u); err != nil {
			return fmt.Errorf("set tokens: %w", err)
		}
		entry, err := passwordEntry(context.Background(), tok, true)
		if err != nil {
			return fmt.Errorf("set tokens: %w", err)
		}
		entries[u] = entry
	}
	s.mu.Lock()
	// As for the passwd file: every version gets a later mtime.
	stamp := time.Now().Truncate(time.Second)
	if !stamp.After(s.tokenStamp) {
		stamp = s.tokenStamp.Add(time.Second)
	}
	err := s.writePasswdFile(s.tokensPath(), entries, stamp)
	if err == nil {
		s.tokenStamp = stamp
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("set tokens: %w", err)
	}
	// The auth process may have read the old file earlier in this second.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	return nil
}

package config

import (
	"fmt"
	"io"
	"os"
)

// ReadSecretFile reads a file holding a secret (a password, a TSIG key, a
// token). It refuses a file that its group or others may read or write:
// the secret may already have leaked, and an operator who made it so
// should hear of it before it is used. The error names the file and its
// mode, never its content.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	// The mode of what was opened, not of what the name points to a
	// moment later.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s has mode %04o: group or others may read it; chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	return b, nil
}

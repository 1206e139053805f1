package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretRefusesAFileGroupOrOthersMayReadOrWrite(t *testing.T) {
	const pw = "hunter2-but-longer"
	path := filepath.Join(t.TempDir(), "master.pw")
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o640, false}, {0o660, false}, {0o604, false}, {0o644, false}, {0o602, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", tt.mode), func(t *testing.T) {
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := Secret("MAILFERRY_TEST_UNSET_SECRET", path)
			switch {
			case tt.ok && (err != nil || got != pw):
				t.Errorf("got %q, %v; want the password", got, err)
			case !tt.ok && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("mode %04o", tt.mode))):
				t.Errorf("err = %v, want a refusal naming the mode", err)
			}
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestSecretRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Secret("MAILFERRY_TEST_UNSET_SECRET", dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as secret file: err = %v", err)
	}
}

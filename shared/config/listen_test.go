package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoopbackIsOnlyThisMachine(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "localhost": true, "LOCALHOST": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.5": false, "mail.example.com": false, "localhost.example.com": false,
	} {
		if got := Loopback(host); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestAMadeSecretFileIsPrivateAndNeverReplacesOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.password")
	pw, err := MakeSecretFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Secret("", path); err != nil || got != pw || len(pw) < 40 {
		t.Fatalf("read back %q, %v; made %q", got, err, pw)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if _, err := MakeSecretFile(path); err == nil {
		t.Error("a second password replaced the first")
	}
	if got, _ := Secret("", path); got != pw {
		t.Errorf("the file changed to %q", got)
	}
}

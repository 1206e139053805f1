package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const contract = `
nats:
  url: ""
  data_dir: ./var/nats
source:
  address: 127.0.0.1:10143
  tls: none
  insecure_skip_verify: false
  auth: master
  master_user: admin
  master_password_file: secrets/src
target:
  address: 127.0.0.1:20143
  tls: none
  auth: master
  master_user: admin
  master_password_file: /abs/tgt
mailboxes:
  file: mailboxes.csv
`

func TestParseAcceptsTheDocumentedContract(t *testing.T) {
	c, err := Parse([]byte(contract), "/etc/mf", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.Address != "127.0.0.1:10143" || c.Target.Auth != AuthMaster {
		t.Errorf("parsed %+v", c)
	}
	if c.Source.MasterPasswordFile != "/etc/mf/secrets/src" || c.Target.MasterPasswordFile != "/abs/tgt" {
		t.Errorf("paths not resolved: %q %q", c.Source.MasterPasswordFile, c.Target.MasterPasswordFile)
	}
	if c.NATS.DataDir != "/etc/mf/var/nats" || c.Mailboxes.File != "/etc/mf/mailboxes.csv" {
		t.Errorf("paths not resolved: %q %q", c.NATS.DataDir, c.Mailboxes.File)
	}
	if c.NATS.DedupWindow.Std() != time.Hour || c.Source.Connections != 8 {
		t.Errorf("defaults missing: %+v %+v", c.NATS, c.Source)
	}
}

func TestParseRejectsBadConfig(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "source:\n  adress: x\n", "adress"},
		{"bad tls", "source: {address: 'h:1', tls: ssl, auth: user}\n", "tls \"ssl\""},
		{"master without user", "source: {address: 'h:1', auth: master}\n", "master_user"},
		{"bad duration", "nats: {dedup_window: soon}\n", "duration"},
		{"unknown auth", "target: {address: 'h:1', auth: oauth}\n", "want master, user or token"},
		{"token at the source", "source: {address: 'h:1', auth: token, opensrs: {url: 'https://oma', user: a, password_file: p}}\n", "auth token is for the target"},
		{"token without the oma", "target: {address: 'h:1', auth: token}\n", "opensrs needs cluster (or url), user and password_file"},
		{"token over plain http", "target: {address: 'h:1', auth: token, opensrs: {url: 'http://oma', user: a, password_file: p}}\n", "want https://"},
		{"token longer than the bucket keeps it", "target: {address: 'h:1', auth: token, opensrs: {url: 'https://oma', user: a, password_file: p, token_hours: 48}}\n", "token_hours 48"},
		{"renewal margin beyond the lifetime", "target: {address: 'h:1', auth: token, opensrs: {url: 'https://oma', user: a, password_file: p, token_hours: 2, renew_before: 3h}}\n", "renew_before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), ".", nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestTargetTokenAuthTakesTheOMASettingsWithDefaults(t *testing.T) {
	c, err := Parse([]byte("target: {address: 'h:993', auth: token, opensrs: {url: 'https://oma.test/api', user: admin@new.test, password_file: oma.pw}}\n"), "/etc/mf", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := c.Target.OpenSRS
	if o.PasswordFile != "/etc/mf/oma.pw" || o.TokenHours != 24 || o.RenewBefore.Std() != time.Hour || o.Client != "mailferry" || o.Timeout.Std() != 30*time.Second {
		t.Errorf("target.opensrs = %+v, want the path resolved and the defaults", o)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	env := []string{"MAILFERRY_SOURCE_ADDRESS=10.0.0.1:993", "MAILFERRY_NATS_DEDUP_WINDOW=2m"}
	c, err := Parse([]byte(contract), ".", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.Address != "10.0.0.1:993" || c.NATS.DedupWindow.Std() != 2*time.Minute {
		t.Errorf("overrides not applied: %+v %+v", c.Source, c.NATS)
	}
}

func TestSecretPrefersEnvironmentAndNeverEchoesIt(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Secret("MAILFERRY_TEST_UNSET_SECRET", f)
	if err != nil || got != "s3cret" {
		t.Fatalf("Secret from file = %q, %v", got, err)
	}
	t.Setenv("MAILFERRY_TEST_SECRET", "fromenv")
	if got, _ := Secret("MAILFERRY_TEST_SECRET", f); got != "fromenv" {
		t.Errorf("Secret from env = %q", got)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := Secret("MAILFERRY_TEST_UNSET_SECRET", empty); err == nil {
		t.Error("empty secret file accepted")
	}
}

package extractor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

// settingsT loads cfg's extractor section or fails the test.
func settingsT(t *testing.T, cfg *config.Config) Settings {
	t.Helper()
	s, err := LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSettingsDefaultWhatTheFileLeavesOutAsSharedConfigDid(t *testing.T) {
	defaults := Settings{Concurrency: 4, LargeMessageBytes: 512 << 10, CheckpointEvery: 200}
	tests := []struct {
		name string
		yaml string
		want Settings
	}{
		{"no file content", "", defaults},
		{"no extractor section", "source: {address: 'h:993', auth: user}\n", defaults},
		{"empty section", "extractor: {}\n", defaults},
		{"some keys", "extractor: {concurrency: 8, checkpoint_every: 20}\n", Settings{Concurrency: 8, LargeMessageBytes: 512 << 10, CheckpointEvery: 20}},
		{"every key", "extractor:\n  concurrency: 2\n  large_message_bytes: 1000\n  checkpoint_every: 3\n", Settings{Concurrency: 2, LargeMessageBytes: 1000, CheckpointEvery: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := settingsT(t, configtest.Parse(t, tt.yaml)); got != tt.want {
				t.Errorf("settings = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTheExtractorReportsWhatIsWrongWithItsSection(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown key with its line", "log: {level: info}\nextractor:\n  concurrency: 2\n  checkpoint_evry: 3\n", "line 4: field checkpoint_evry not found"},
		{"body over the broker's limit", "extractor: {large_message_bytes: 2000000}\n", "extractor: large_message_bytes 2000000: must stay below the broker's 1 MiB max_payload"},
		{"not a number", "extractor: {concurrency: many}\n", "extractor: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The file parses: only the owner looks inside its section.
			cfg := configtest.Parse(t, tt.yaml)
			err := CheckConfig(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestEnvironmentOverridesTheExtractorSection(t *testing.T) {
	cfg := configtest.Parse(t, "extractor: {concurrency: 2, checkpoint_every: 3}\n",
		"MAILFERRY_EXTRACTOR_CONCURRENCY=9", "MAILFERRY_EXTRACTOR_LARGE_MESSAGE_BYTES=4096")
	want := Settings{Concurrency: 9, LargeMessageBytes: 4096, CheckpointEvery: 3}
	if got := settingsT(t, cfg); got != want {
		t.Errorf("settings = %+v, want %+v", got, want)
	}
	cfg = configtest.Parse(t, "", "MAILFERRY_EXTRACTOR_CHECKPOINT_EVERY=often")
	if err := CheckConfig(cfg); err == nil || !strings.Contains(err.Error(), "MAILFERRY_EXTRACTOR_CHECKPOINT_EVERY") {
		t.Errorf("bad override: err = %v, want it named", err)
	}
}

func TestAServiceWithoutSettingsRefusesToRun(t *testing.T) {
	s := &Service{Config: configtest.Parse(t, "")}
	if err := s.Run(context.Background()); !errors.Is(err, errNoSettings) {
		t.Errorf("Run = %v, want %v", err, errNoSettings)
	}
	if _, err := s.Extract(context.Background(), &job.Job{}); !errors.Is(err, errNoSettings) {
		t.Errorf("Extract = %v, want %v", err, errNoSettings)
	}
}

func TestTheUnacknowledgedBytesBoundIsSharedByTheMailboxesExtractedAtOnce(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want int64
	}{
		{"defaults: 16 MiB over 4 mailboxes", "", 4 << 20},
		{"one mailbox at a time gets it all", "extractor: {concurrency: 1}", 16 << 20},
		{"source connections bound the mailboxes", "source: {connections: 2}\nextractor: {concurrency: 8}\nnats: {max_pending_bytes: 8388608}", 4 << 20},
		{"never below one inline record", "extractor: {concurrency: 16}\nsource: {connections: 16}\nnats: {max_pending_bytes: 1048576}", maxInlineBytes + 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configtest.Parse(t, tt.yaml)
			s := &Service{Config: cfg, Settings: settingsT(t, cfg)}
			if got := s.pendingPerMailbox(); got != tt.want {
				t.Errorf("pendingPerMailbox = %d, want %d", got, tt.want)
			}
		})
	}
}

// A source credential key that cannot be used is a configuration error
// before any mailbox is tried (it was found at the first mailbox that
// needed it, which then failed for good).
func TestAnUnusableSourceCredentialKeyIsRefusedWithTheSection(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("ab", 32)+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct{ name, path, want string }{
		{"a key others may read", write("open.key", 0o644), "0644"},
		{"no key file", filepath.Join(dir, "absent.key"), "no such file"},
		{"a key only its owner reads", write("good.key", 0o600), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configtest.Parse(t, "source: {auth: user, credential_key_file: "+tt.path+"}\n")
			err := CheckConfig(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "source.credential_key_file") || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want it to name source.credential_key_file and %q", err, tt.want)
			}
		})
	}
}

package extractor

import (
	"errors"
	"fmt"

	"github.com/mailferry/mailferry/shared/sourcecred"

	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level key of the extractor's section in the file.
const Section = "extractor"

// Settings tune the extractor: the extractor: section of the file. They
// live here, not in shared/config, so that the service that reads them is
// the one that defines them.
type Settings struct {
	// Concurrency is how many mailboxes are extracted at once (bounded
	// by source.connections too).
	Concurrency int `yaml:"concurrency"`
	// LargeMessageBytes: bodies above it go to the object store.
	LargeMessageBytes int64 `yaml:"large_message_bytes"`
	// CheckpointEvery is how many published messages between checkpoints.
	CheckpointEvery int `yaml:"checkpoint_every"`
}

// maxInlineBytes is the largest body the mail stream may carry: the
// broker's max_payload is 1 MiB, and a record has headers too.
const maxInlineBytes = 900 << 10

// LoadSettings decodes the extractor section of cfg (strictly, with
// MAILFERRY_EXTRACTOR_* overrides), fills in defaults and validates it. A
// file without the section gives the defaults.
func LoadSettings(cfg *config.Config) (Settings, error) {
	var s Settings
	if err := cfg.Section(Section, &s); err != nil {
		return Settings{}, err
	}
	s.defaults()
	if err := s.validate(); err != nil {
		return Settings{}, fmt.Errorf("%s: %w", Section, err)
	}
	if path := cfg.Source.CredentialKeyFile; path != "" {
		// Read now, not at the first mailbox that needs it: a key others
		// may read, or no key, is a configuration error before any work.
		if _, err := sourcecred.LoadKey(path); err != nil {
			return Settings{}, fmt.Errorf("source.credential_key_file: %w", err)
		}
	}
	return s, nil
}

// CheckConfig reports what is wrong with cfg's extractor section, for a
// daemon to refuse it before it connects to the broker (daemon.Check).
func CheckConfig(cfg *config.Config) error {
	_, err := LoadSettings(cfg)
	return err
}

func (s *Settings) defaults() {
	if s.Concurrency == 0 {
		s.Concurrency = 4
	}
	if s.LargeMessageBytes == 0 {
		s.LargeMessageBytes = 512 << 10
	}
	if s.CheckpointEvery == 0 {
		s.CheckpointEvery = 200
	}
}

func (s *Settings) validate() error {
	if s.LargeMessageBytes > maxInlineBytes {
		return fmt.Errorf("large_message_bytes %d: must stay below the broker's 1 MiB max_payload", s.LargeMessageBytes)
	}
	return nil
}

// loaded reports whether s came from LoadSettings, which never leaves
// Concurrency 0.
func (s Settings) loaded() bool { return s.Concurrency != 0 }

// errNoSettings is a Service made without LoadSettings: its zero Settings
// would put every body in the object store and checkpoint every message.
var errNoSettings = errors.New("extractor: Service.Settings not set (make them with LoadSettings)")

// AtOnce is how many mailboxes the extractor extracts at once: its
// concurrency, bounded by source.connections (one connection each).
func (s Settings) AtOnce(cfg *config.Config) int {
	return min(s.Concurrency, cfg.Source.Connections)
}

package loader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level key of the loader's section in the file.
const Section = "loader"

// Settings tune the loader: the loader: section of the file. They live
// here, not in shared/config, so that the service that reads them is the
// one that defines them; verify maps folders with them too.
type Settings struct {
	// Concurrency is how many mailboxes are loaded at once (bounded by
	// half of target.connections too).
	Concurrency int `yaml:"concurrency"`
	// BatchMessages and BatchBytes bound one append batch.
	BatchMessages int   `yaml:"batch_messages"`
	BatchBytes    int64 `yaml:"batch_bytes"`
	// Substitute replaces a target separator inside a source folder level.
	Substitute string `yaml:"substitute"`
	// LeaseTTL is how long a mailbox stays locked to a loader session
	// that stopped renewing it (a killed process).
	LeaseTTL config.Duration `yaml:"lease_ttl"`
	// FolderMap overrides folder names: source name -> target name.
	FolderMap map[string]string `yaml:"folder_map"`
	// MultiAppend uses RFC 3502 MULTIAPPEND when the target offers it
	// (unset: yes).
	MultiAppend *bool `yaml:"multiappend"`
	// SpecialFolders names the target's folder for a role (sent, drafts,
	// trash, junk, archive) where the target's LIST does not say (no
	// special-use attributes): OpenSRS's per-user spam folder, say. The
	// target's existing Sent, Drafts, Trash, Spam/Junk ... are found by
	// name without it.
	SpecialFolders map[string]string `yaml:"special_folders"`
}

// specialRoles are the roles special_folders may name.
var specialRoles = map[string]imap.MailboxAttr{
	"sent": imap.MailboxAttrSent, "drafts": imap.MailboxAttrDrafts, "trash": imap.MailboxAttrTrash,
	"junk": imap.MailboxAttrJunk, "archive": imap.MailboxAttrArchive,
}

// SpamFolders names a target mailbox's spam folder as the provider keeps
// it (OpenSRS: get_user's metadata.special_folders.spam); "" when it does
// not say. The OpenSRS minter has it.
type SpamFolders interface {
	SpamFolder(ctx context.Context, user string) (string, error)
}

// TargetSpecial is the folder mapper's Target.Special for the target
// mailbox user: special_folders, with the spam folder the provider keeps
// for that user when p can tell (it names that user's own folder, so it
// wins over the file's). p nil: special_folders alone.
func (s Settings) TargetSpecial(ctx context.Context, p SpamFolders, user string) (map[imap.MailboxAttr]string, error) {
	out := s.Special()
	if p == nil {
		return out, nil
	}
	spam, err := p.SpamFolder(ctx, user)
	if err != nil {
		return out, fmt.Errorf("the provider's spam folder of %s: %w", user, err)
	}
	if spam != "" {
		out[imap.MailboxAttrJunk] = spam
	}
	return out, nil
}

// Special is SpecialFolders by role, for the folder mapper.
func (s Settings) Special() map[imap.MailboxAttr]string {
	out := map[imap.MailboxAttr]string{}
	for role, name := range s.SpecialFolders {
		out[specialRoles[role]] = name
	}
	return out
}

// LoadSettings decodes the loader section of cfg (strictly, with
// MAILFERRY_LOADER_* overrides, folder_map included), and fills in
// defaults. A file without the section gives the defaults.
func LoadSettings(cfg *config.Config) (Settings, error) {
	var s Settings
	if err := cfg.Section(Section, &s); err != nil {
		return Settings{}, err
	}
	for role, name := range s.SpecialFolders {
		if _, ok := specialRoles[role]; !ok || name == "" {
			return Settings{}, fmt.Errorf("loader.special_folders: %q: %q; want a folder name for sent, drafts, trash, junk or archive", role, name)
		}
	}
	s.defaults()
	return s, nil
}

// CheckConfig reports what is wrong with cfg's loader section, for a
// daemon to refuse it before it connects to the broker (daemon.Check).
func CheckConfig(cfg *config.Config) error {
	_, err := LoadSettings(cfg)
	return err
}

func (s *Settings) defaults() {
	if s.Concurrency == 0 {
		s.Concurrency = 4
	}
	if s.BatchMessages == 0 {
		s.BatchMessages = 100
	}
	if s.BatchBytes == 0 {
		s.BatchBytes = 32 << 20
	}
	if s.Substitute == "" {
		s.Substitute = "_"
	}
	if s.LeaseTTL == 0 {
		s.LeaseTTL = config.Duration(30 * time.Second)
	}
}

// loaded reports whether s came from LoadSettings, which never leaves
// Concurrency 0.
func (s Settings) loaded() bool { return s.Concurrency != 0 }

// errNoSettings is a Service made without LoadSettings: its zero Settings
// would flush after every message and hold no lease.
var errNoSettings = errors.New("loader: Service.Settings not set (make them with LoadSettings)")

// AtOnce is how many mailboxes the loader loads at once: its concurrency,
// bounded by target.connections (two connections each), at least one.
func (s Settings) AtOnce(cfg *config.Config) int {
	return min(s.Concurrency, max(1, cfg.Target.Connections/2))
}

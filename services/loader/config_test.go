package loader

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

// settingsT loads cfg's loader section or fails the test.
func settingsT(t *testing.T, cfg *config.Config) Settings {
	t.Helper()
	s, err := LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSettingsDefaultWhatTheFileLeavesOutAsSharedConfigDid(t *testing.T) {
	no := false
	defaults := func(change func(*Settings)) Settings {
		s := Settings{Concurrency: 4, BatchMessages: 100, BatchBytes: 32 << 20, Substitute: "_", LeaseTTL: config.Duration(30 * time.Second)}
		if change != nil {
			change(&s)
		}
		return s
	}
	tests := []struct {
		name string
		yaml string
		want Settings
	}{
		{"no file content", "", defaults(nil)},
		{"no loader section", "target: {address: 'h:993', auth: user}\n", defaults(nil)},
		{"empty section", "loader: {}\n", defaults(nil)},
		{"some keys", "loader: {batch_messages: 4, lease_ttl: 3s}\n", defaults(func(s *Settings) {
			s.BatchMessages, s.LeaseTTL = 4, config.Duration(3*time.Second)
		})},
		{"every key", `loader:
  concurrency: 8
  batch_messages: 20
  batch_bytes: 1000
  substitute: "-"
  lease_ttl: 1m
  folder_map: {Old: INBOX}
  multiappend: false
  special_folders: {junk: Spam}
`, Settings{Concurrency: 8, BatchMessages: 20, BatchBytes: 1000, Substitute: "-", LeaseTTL: config.Duration(time.Minute),
			FolderMap: map[string]string{"Old": "INBOX"}, MultiAppend: &no, SpecialFolders: map[string]string{"junk": "Spam"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := settingsT(t, configtest.Parse(t, tt.yaml)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("settings = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTheLoaderReportsWhatIsWrongWithItsSection(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown key with its line", "log: {level: info}\nloader:\n  batch_messages: 4\n  folder_mapping: {a: b}\n", "line 4: field folder_mapping not found"},
		{"bad duration", "loader: {lease_ttl: soon}\n", `duration "soon"`},
		{"a list for the folder map", "loader:\n  folder_map: [a, b]\n", "loader: "},
		{"a role special_folders does not know", "loader: {special_folders: {spam: Spam}}\n", `special_folders: "spam"`},
		{"a role without a folder", "loader: {special_folders: {junk: ''}}\n", `special_folders: "junk"`},
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

func TestEnvironmentOverridesTheLoaderSectionFolderMapIncluded(t *testing.T) {
	yes := true
	tests := []struct {
		name  string
		env   string
		check func(Settings) bool
		fails string
	}{
		{"folder map", "MAILFERRY_LOADER_FOLDER_MAP=Sent Items=Sent,Junk=Spam", func(s Settings) bool {
			return reflect.DeepEqual(s.FolderMap, map[string]string{"Sent Items": "Sent", "Junk": "Spam"})
		}, ""},
		{"empty folder map", "MAILFERRY_LOADER_FOLDER_MAP=", func(s Settings) bool { return s.FolderMap != nil && len(s.FolderMap) == 0 }, ""},
		{"scalar", "MAILFERRY_LOADER_BATCH_MESSAGES=7", func(s Settings) bool { return s.BatchMessages == 7 && s.Concurrency == 2 }, ""},
		{"duration", "MAILFERRY_LOADER_LEASE_TTL=10s", func(s Settings) bool { return s.LeaseTTL.Std() == 10*time.Second }, ""},
		{"optional boolean", "MAILFERRY_LOADER_MULTIAPPEND=true", func(s Settings) bool { return s.MultiAppend != nil && *s.MultiAppend == yes }, ""},
		{"folder map item without =", "MAILFERRY_LOADER_FOLDER_MAP=Sent", nil, `MAILFERRY_LOADER_FOLDER_MAP: item "Sent": want key=value`},
		{"folder map key twice", "MAILFERRY_LOADER_FOLDER_MAP=a=1,a=2", nil, `MAILFERRY_LOADER_FOLDER_MAP: key "a" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configtest.Parse(t, "loader: {concurrency: 2, folder_map: {x: y}}\n", tt.env)
			s, err := LoadSettings(cfg)
			if tt.fails != "" {
				if err == nil || !strings.Contains(err.Error(), tt.fails) {
					t.Fatalf("err = %v, want %q", err, tt.fails)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Errorf("%s gave %+v", tt.env, s)
			}
		})
	}
}

func TestAServiceWithoutSettingsRefusesToRun(t *testing.T) {
	s := &Service{Config: configtest.Parse(t, "")}
	if err := s.Run(context.Background()); !errors.Is(err, errNoSettings) {
		t.Errorf("Run = %v, want %v", err, errNoSettings)
	}
	if _, err := s.Load(context.Background(), &job.Job{}); !errors.Is(err, errNoSettings) {
		t.Errorf("Load = %v, want %v", err, errNoSettings)
	}
}

type spamOf map[string]string

func (s spamOf) SpamFolder(_ context.Context, user string) (string, error) {
	if s == nil {
		return "", errors.New("OMA unreachable")
	}
	return s[user], nil
}

func TestTheProvidersSpamFolderForAUserWinsOverTheFiles(t *testing.T) {
	s := Settings{SpecialFolders: map[string]string{"junk": "Spam", "sent": "Sent"}}
	tests := []struct {
		name    string
		p       SpamFolders
		wantJ   string
		wantErr bool
	}{
		{"no provider", nil, "Spam", false},
		{"the provider names the user's", spamOf{"ann@new.example": "Junk Mail"}, "Junk Mail", false},
		{"the provider does not say", spamOf{}, "Spam", false},
		{"the provider cannot be asked", spamOf(nil), "Spam", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.TargetSpecial(context.Background(), tt.p, "ann@new.example")
			if (err != nil) != tt.wantErr || got[imap.MailboxAttrJunk] != tt.wantJ || got[imap.MailboxAttrSent] != "Sent" {
				t.Errorf("got %v, %v; want junk %q (error %v)", got, err, tt.wantJ, tt.wantErr)
			}
		})
	}
}

package dashboard

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level key of the dashboard's section in the file.
const Section = "dashboard"

// DefaultUser is the basic-auth user when the file names none.
const DefaultUser = "ops"

// PasswordFileName is where, under nats.data_dir, the dashboard keeps the
// password it made when the file names no password_file.
const PasswordFileName = "dashboard.password"

// Settings are the dashboard: section of the file.
type Settings struct {
	// Listen is the page's address (default 127.0.0.1:9180). Beyond
	// loopback CertFile and KeyFile are required: the page shows every
	// mailbox address and the password travels with each request.
	Listen   string `yaml:"listen"`
	CertFile string `yaml:"cert_file" config:"path"`
	KeyFile  string `yaml:"key_file" config:"path"`
	// User and PasswordFile are the basic-auth credentials every request
	// must carry. Without a password file one is made on first start in
	// nats.data_dir (mode 0600) and its path logged.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file" config:"path"`
	// Interval is how often the page's state is read again and, when it
	// changed, sent to open pages (default 2s).
	Interval config.Duration `yaml:"interval"`
}

// LoadSettings decodes the dashboard section of cfg, fills in defaults
// and checks it.
func LoadSettings(cfg *config.Config) (Settings, error) {
	var s Settings
	if err := cfg.Section(Section, &s); err != nil {
		return Settings{}, err
	}
	if s.Listen == "" {
		s.Listen = "127.0.0.1:9180"
	}
	if s.User == "" {
		s.User = DefaultUser
	}
	if s.PasswordFile == "" {
		s.PasswordFile = filepath.Join(cfg.NATS.DataDir, PasswordFileName)
	}
	if s.Interval == 0 {
		s.Interval = config.Duration(2 * time.Second)
	}
	return s, s.check()
}

func (s Settings) check() error {
	host, _, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return fmt.Errorf("dashboard.listen %q: %w", s.Listen, err)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return errors.New("dashboard: set both cert_file and key_file, or neither")
	}
	if !config.Loopback(host) && s.CertFile == "" {
		return fmt.Errorf("dashboard.listen %q is not a loopback address: set cert_file and key_file (the password travels with every request)", s.Listen)
	}
	if s.Interval.Std() < 100*time.Millisecond {
		return fmt.Errorf("dashboard.interval %s: want at least 100ms", s.Interval.Std())
	}
	return nil
}

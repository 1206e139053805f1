package metrics

import (
	"errors"
	"fmt"
	"net"

	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level configuration section this package owns.
const Section = "metrics"

// Settings are the metrics section: where a daemon serves /metrics,
// /healthz and /readyz, and how it protects them.
//
//	metrics:
//	  listen: 127.0.0.1:9464
//	  user: prometheus
//	  password_file: /etc/mailferry/metrics.password
//
// Without listen there is no listener. Every listener requires basic
// authentication (user, password_file), loopback included: no listener
// of mailferry is open to whoever can reach it. Beyond loopback it also
// needs TLS (cert_file, key_file), or the password crosses the network in
// clear.
type Settings struct {
	// Listen is host:port; empty: no listener.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile make the listener serve HTTPS.
	CertFile string `yaml:"cert_file" config:"path"`
	KeyFile  string `yaml:"key_file" config:"path"`
	// User and PasswordFile (mode 0600) require HTTP basic authentication
	// of every request.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file" config:"path"`
}

// LoadSettings decodes and checks cfg's metrics section (strictly: an
// unknown key is an error naming its line).
func LoadSettings(cfg *config.Config) (Settings, error) {
	var s Settings
	if err := cfg.Section(Section, &s); err != nil {
		return Settings{}, err
	}
	if err := s.Check(); err != nil {
		return Settings{}, fmt.Errorf("%s: %w", Section, err)
	}
	return s, nil
}

// CheckConfig reports what is wrong with cfg's metrics section.
func CheckConfig(cfg *config.Config) error {
	_, err := LoadSettings(cfg)
	return err
}

// Check reports the first inconsistency in s.
func (s Settings) Check() error {
	if (s.CertFile == "") != (s.KeyFile == "") {
		return errors.New("cert_file and key_file go together")
	}
	if (s.User == "") != (s.PasswordFile == "") {
		return errors.New("user and password_file go together")
	}
	if s.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return fmt.Errorf("listen %q: %w", s.Listen, err)
	}
	if s.User == "" {
		return fmt.Errorf("listen %q: set user and password_file: every listener requires authentication", s.Listen)
	}
	if !config.Loopback(host) && s.CertFile == "" {
		return fmt.Errorf("listen %q is not a loopback address: set cert_file, key_file, user and password_file (TLS and basic authentication)", s.Listen)
	}
	return nil
}

package cutover

import (
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level key of the orchestrator's section in the file.
const Section = "cutover"

// Settings are the cutover: section of the file.
type Settings struct {
	// Order is prestage (copy and verify, then switch; the default) or
	// switch_first (provision, switch, then copy).
	Order campaign.Order `yaml:"order"`
	// DomainsInFlight bounds the domains between provisioning and done at
	// once (paused and failed ones do not count); default 50.
	DomainsInFlight int `yaml:"domains_in_flight"`
	// DeltaGrace is how long draining waits after the old MX TTL expired
	// (default 1h): sending servers keep retrying the old MX for a while.
	DeltaGrace config.Duration `yaml:"delta_grace"`
	// ReportDir receives <domain>.html and <domain>.json (default
	// ./reports, relative to the file).
	ReportDir string `yaml:"report_dir" config:"path"`
	// RestoreTTL is the TTL the mail records get back once a switched
	// domain is done (default dns.restore_ttl, else 3600).
	RestoreTTL uint32 `yaml:"restore_ttl"`
	// Tick is how often the orchestrator admits domains and looks at the
	// clock (default 5s).
	Tick config.Duration `yaml:"tick"`
	// LeaseTTL is how long a killed orchestrator keeps the lead before
	// another instance takes it (default 30s).
	LeaseTTL config.Duration `yaml:"lease_ttl"`
	// VerifyConcurrency bounds the mailboxes verified at once, over every
	// domain (default 4).
	VerifyConcurrency int `yaml:"verify_concurrency"`
	// RetryAfter is how long an action that failed (a verification that
	// could not connect, a publish the broker refused) waits before it is
	// taken again (default 30s).
	RetryAfter config.Duration `yaml:"retry_after"`

	// switches says the file has a dns section: the campaign switches
	// domains (without one, every domain's DNS is skipped).
	switches bool
}

// Switches reports whether the campaign switches DNS: the file has a dns
// section.
func (s Settings) Switches() bool { return s.switches }

// LoadSettings decodes the cutover section of cfg and fills in defaults;
// a file without it gives the defaults.
func LoadSettings(cfg *config.Config) (Settings, error) {
	var s Settings
	if err := cfg.Section(Section, &s); err != nil {
		return Settings{}, err
	}
	if err := s.defaults(cfg); err != nil {
		return Settings{}, fmt.Errorf("config: %s: %w", Section, err)
	}
	return s, nil
}

// CheckConfig reports what is wrong with cfg's cutover section, for the
// daemon to refuse it before it connects to the broker (daemon.Check).
func CheckConfig(cfg *config.Config) error {
	_, err := LoadSettings(cfg)
	return err
}

func (s *Settings) defaults(cfg *config.Config) error {
	switch s.Order {
	case "":
		s.Order = campaign.OrderPrestage
	case campaign.OrderPrestage, campaign.OrderSwitchFirst:
	default:
		return fmt.Errorf("order %q: want %s or %s", s.Order, campaign.OrderPrestage, campaign.OrderSwitchFirst)
	}
	switch {
	case s.DomainsInFlight == 0:
		s.DomainsInFlight = 50
	case s.DomainsInFlight < 0:
		return fmt.Errorf("domains_in_flight %d: want at least 1", s.DomainsInFlight)
	}
	switch {
	case s.VerifyConcurrency == 0:
		s.VerifyConcurrency = 4
	case s.VerifyConcurrency < 0:
		return fmt.Errorf("verify_concurrency %d: want at least 1", s.VerifyConcurrency)
	}
	defaultDuration(&s.DeltaGrace, campaign.DefaultDeltaGrace)
	defaultDuration(&s.Tick, 5*time.Second)
	defaultDuration(&s.LeaseTTL, 30*time.Second)
	defaultDuration(&s.RetryAfter, 30*time.Second)
	for name, d := range map[string]config.Duration{"delta_grace": s.DeltaGrace, "tick": s.Tick, "lease_ttl": s.LeaseTTL, "retry_after": s.RetryAfter} {
		if d < 0 {
			return fmt.Errorf("%s %s: want a positive duration", name, time.Duration(d))
		}
	}
	if s.LeaseTTL < config.Duration(3*time.Second) {
		return fmt.Errorf("lease_ttl %s: want at least 3s", time.Duration(s.LeaseTTL))
	}
	if s.ReportDir == "" {
		s.ReportDir = cfg.Path("reports")
	}
	if s.RestoreTTL > dnsconfig.MaxTTL {
		return fmt.Errorf("restore_ttl %d: want 1 to %d seconds", s.RestoreTTL, dnsconfig.MaxTTL)
	}
	d, err := dnsconfig.Load(cfg)
	if err != nil {
		return err
	}
	s.switches = d.Enabled()
	if s.RestoreTTL == 0 {
		s.RestoreTTL = 3600
		if d.RestoreTTL > 0 {
			s.RestoreTTL = d.RestoreTTL
		}
	}
	return nil
}

func defaultDuration(d *config.Duration, def time.Duration) {
	if *d == 0 {
		*d = config.Duration(def)
	}
}

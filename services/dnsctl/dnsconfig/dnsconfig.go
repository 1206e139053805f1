// Package dnsconfig is dnsctl's section of the configuration file (dns:),
// its defaults and its checks. It lives with dnsctl, not in shared/config,
// so that the service that reads it is the one that defines it; it is a
// package of its own because dnsctl's subpackages (plan) read it too.
package dnsconfig

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level key of the section in the file.
const Section = "dns"

// MaxTTL is the largest TTL a record may have (RFC 2181 §8).
const MaxTTL = 1<<31 - 1

// Load decodes the dns section of cfg (strictly, with MAILFERRY_DNS_*
// overrides and paths resolved against the file's directory), fills in
// defaults and validates it. A file without the section gives a disabled
// DNS (see Enabled).
func Load(cfg *config.Config) (*DNS, error) {
	d := &DNS{}
	if err := cfg.Section(Section, d); err != nil {
		return nil, err
	}
	d.defaults()
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", Section, err)
	}
	return d, nil
}

// DNS configures dnsctl, which switches the MX and mail records of the
// domains whose mail the legacy provider hosts, by TSIG-signed RFC 2136
// updates to the primary authoritative server.
type DNS struct {
	// Server is host:port of the primary that accepts updates; records are
	// read from it too.
	Server string `yaml:"server"`
	// TSIGKeyFile is a BIND key file (key "name" { algorithm ...; secret
	// "..."; };). The secret never appears in logs, argv or errors.
	TSIGKeyFile string `yaml:"tsig_key_file" config:"path"`
	// TSIGKeyName picks one key when the file holds several.
	TSIGKeyName string `yaml:"tsig_key_name"`
	// VerifyServers are host:port of every server that must serve the
	// change before a domain counts as switched, besides the zone's NS set.
	VerifyServers []string `yaml:"verify_servers"`
	// VerifyNS adds the addresses of the zone's NS hosts, port NSPort, to
	// VerifyServers.
	VerifyNS *bool `yaml:"verify_ns"`
	NSPort   int   `yaml:"ns_port"`
	// LegacyMailHosts identify the legacy provider: host names (a leading
	// "*." matches any name below), IP addresses or prefixes (192.0.2.0/24).
	LegacyMailHosts []string `yaml:"legacy_mail_hosts"`
	// NewMX is the new provider's MX set, "preference host." each.
	NewMX []string `yaml:"new_mx"`
	// MailHostA, MailHostAAAA and MailHostCNAME are the new targets of a
	// domain's mail host (mail.<domain> and in-zone MX hosts). Without
	// MailHostCNAME a mail host that is a CNAME to the legacy provider
	// becomes an A record. Without MailHostAAAA a legacy AAAA is removed.
	MailHostA     string `yaml:"mail_host_a"`
	MailHostAAAA  string `yaml:"mail_host_aaaa"`
	MailHostCNAME string `yaml:"mail_host_cname"`
	// MailHostLabels are the labels below a domain that name its mail host
	// besides in-zone MX hosts. Default: [mail].
	MailHostLabels []string `yaml:"mail_host_labels"`
	// SPF replaces one mechanism in a domain's SPF TXT record.
	SPF SPF `yaml:"spf"`
	// SRV records (RFC 6186) to add to every switched domain.
	SRV []SRV `yaml:"srv"`
	// DomainsFile lists the domains to consider, one per line.
	DomainsFile string `yaml:"domains_file" config:"path"`
	// Concurrency bounds domains handled at once; Rate bounds updates per
	// second (default 100; -1: unbounded).
	Concurrency int `yaml:"concurrency"`
	Rate        int `yaml:"rate"`
	// MaxChangePercent is the share of its domains, in percent, one run
	// may change without --force.
	MaxChangePercent int `yaml:"max_change_percent"`
	// Timeout bounds one query or update; VerifyTimeout one domain's
	// verification; PlanMaxAge how old a stored plan apply accepts.
	Timeout       config.Duration `yaml:"timeout"`
	VerifyTimeout config.Duration `yaml:"verify_timeout"`
	PlanMaxAge    config.Duration `yaml:"plan_max_age"`
	// SwitchOnProvisioned makes the service switch a domain as soon as the
	// auth service reports it provisioned, before any mail has moved.
	// Off by default: a `dns cutover` or a campaign asks for the switch.
	SwitchOnProvisioned *bool `yaml:"switch_on_provisioned"`
	// RestoreTTL is the TTL, in seconds, restore-ttl gives the mail
	// records after the cutover (default 3600).
	RestoreTTL uint32 `yaml:"restore_ttl"`
}

// SPF names the SPF mechanism to replace and its replacement.
type SPF struct {
	Replace string `yaml:"replace"`
	With    string `yaml:"with"`
}

// SRV is one RFC 6186 service record, e.g. _imaps._tcp on port 993.
type SRV struct {
	Service  string `yaml:"service"`
	Priority int    `yaml:"priority"`
	Weight   int    `yaml:"weight"`
	Port     int    `yaml:"port"`
	Target   string `yaml:"target"`
}

// defaults fills in what the file left out; Section has resolved the
// paths.
func (d *DNS) defaults() {
	if d.VerifyNS == nil {
		t := true
		d.VerifyNS = &t
	}
	if d.SwitchOnProvisioned == nil {
		f := false
		d.SwitchOnProvisioned = &f
	}
	if d.RestoreTTL == 0 {
		d.RestoreTTL = 3600
	}
	if d.NSPort == 0 {
		d.NSPort = 53
	}
	if len(d.MailHostLabels) == 0 {
		d.MailHostLabels = []string{"mail"}
	}
	if d.Concurrency == 0 {
		d.Concurrency = 16
	}
	if d.Rate == 0 {
		d.Rate = 100
	}
	if d.MaxChangePercent == 0 {
		// octoDNS's default: a run that would change more than this is
		// more likely a wrong configuration than a cutover.
		d.MaxChangePercent = 30
	}
	if d.Timeout == 0 {
		d.Timeout = config.Duration(5 * time.Second)
	}
	if d.VerifyTimeout == 0 {
		d.VerifyTimeout = config.Duration(2 * time.Minute)
	}
	if d.PlanMaxAge == 0 {
		d.PlanMaxAge = config.Duration(24 * time.Hour)
	}
}

// Enabled reports whether the file configures dnsctl at all.
func (d *DNS) Enabled() bool { return d.Server != "" }

// validate checks the section only when it is used: a service's own file
// may leave it out.
func (d *DNS) validate() error {
	if !d.Enabled() {
		return nil
	}
	checks := []func() error{
		d.validateServers, d.validateTargets, d.validateLegacy, d.validateSRV, d.validateLimits,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (d *DNS) validateServers() error {
	for _, s := range append([]string{d.Server}, d.VerifyServers...) {
		if _, _, err := splitHostPort(s); err != nil {
			return err
		}
	}
	if d.TSIGKeyFile == "" {
		return errors.New("tsig_key_file: required to sign updates")
	}
	if d.NSPort < 1 || d.NSPort > 65535 {
		return fmt.Errorf("ns_port %d: want 1-65535", d.NSPort)
	}
	return nil
}

func splitHostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("server %q: want host:port", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("server %q: port %q: want 1-65535", s, port)
	}
	return host, p, nil
}

func (d *DNS) validateTargets() error {
	if len(d.NewMX) == 0 {
		return errors.New("new_mx: required (\"10 mx1.example.\" ...)")
	}
	for _, mx := range d.NewMX {
		if _, _, err := ParseMX(mx); err != nil {
			return fmt.Errorf("new_mx: %w", err)
		}
	}
	if d.MailHostA == "" && d.MailHostCNAME == "" {
		return errors.New("mail_host_a or mail_host_cname: one is required")
	}
	if err := checkAddr("mail_host_a", d.MailHostA, netip.Addr.Is4); err != nil {
		return err
	}
	if err := checkAddr("mail_host_aaaa", d.MailHostAAAA, func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }); err != nil {
		return err
	}
	if d.MailHostCNAME != "" && !strings.HasSuffix(d.MailHostCNAME, ".") {
		return fmt.Errorf("mail_host_cname %q: want a fully qualified name ending in '.'", d.MailHostCNAME)
	}
	if (d.SPF.Replace == "") != (d.SPF.With == "") {
		return errors.New("spf: replace and with go together")
	}
	if strings.ContainsAny(d.SPF.Replace+d.SPF.With, " \t\"") {
		return errors.New("spf: replace and with are single mechanisms without spaces or quotes")
	}
	return nil
}

func checkAddr(key, v string, ok func(netip.Addr) bool) error {
	if v == "" {
		return nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !ok(a) {
		return fmt.Errorf("%s %q: not an address of that family", key, v)
	}
	return nil
}

// ParseMX splits "10 mx1.example." into preference and fully qualified
// host.
func ParseMX(s string) (uint16, string, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, "", fmt.Errorf("%q: want \"preference host.\"", s)
	}
	pref, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return 0, "", fmt.Errorf("%q: preference: %w", s, err)
	}
	if !strings.HasSuffix(f[1], ".") {
		return 0, "", fmt.Errorf("%q: host must be fully qualified (end in '.')", s)
	}
	return uint16(pref), f[1], nil
}

func (d *DNS) validateLegacy() error {
	if len(d.LegacyMailHosts) == 0 {
		return errors.New("legacy_mail_hosts: required: names or addresses of the legacy provider")
	}
	for _, h := range d.LegacyMailHosts {
		if h == "" || strings.ContainsAny(h, " \t") {
			return fmt.Errorf("legacy_mail_hosts: %q is neither a name nor an address", h)
		}
	}
	return nil
}

func (d *DNS) validateSRV() error {
	for _, s := range d.SRV {
		if !strings.HasPrefix(s.Service, "_") || !strings.Contains(s.Service, "._") {
			return fmt.Errorf("srv service %q: want _service._proto", s.Service)
		}
		if s.Port < 1 || s.Port > 65535 || s.Priority < 0 || s.Priority > 65535 || s.Weight < 0 || s.Weight > 65535 {
			return fmt.Errorf("srv %s: priority, weight and port must be 0-65535 (port at least 1)", s.Service)
		}
		if !strings.HasSuffix(s.Target, ".") {
			return fmt.Errorf("srv %s target %q: want a fully qualified name ending in '.'", s.Service, s.Target)
		}
	}
	return nil
}

func (d *DNS) validateLimits() error {
	if d.Concurrency < 1 {
		return fmt.Errorf("concurrency %d: want at least 1", d.Concurrency)
	}
	if d.Rate < -1 {
		return fmt.Errorf("rate %d: want updates per second, or -1 for unbounded", d.Rate)
	}
	if d.MaxChangePercent < 1 || d.MaxChangePercent > 100 {
		return fmt.Errorf("max_change_percent %d: want 1 to 100", d.MaxChangePercent)
	}
	if d.RestoreTTL > MaxTTL {
		return fmt.Errorf("restore_ttl %d: want 1 to %d seconds", d.RestoreTTL, MaxTTL)
	}
	return nil
}

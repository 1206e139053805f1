package dnsctl_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/shared/config"
)

// loadDNS parses raw as a whole file and loads its dns section.
func loadDNS(t *testing.T, raw, dir string, env []string) (*dnsconfig.DNS, error) {
	t.Helper()
	c, err := config.Parse([]byte(raw), dir, env)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return dnsconfig.Load(c)
}

// validDNS is a complete dns section; each case below breaks one key.
const validDNS = `dns:
  server: 127.0.0.1:10053
  tsig_key_file: key.conf
  legacy_mail_hosts: [192.0.2.10]
  new_mx: ["10 mx1.new.test."]
  mail_host_a: 198.51.100.25
`

func TestConfigRefusesADNSSectionThatCannotWork(t *testing.T) {
	tests := []struct {
		name, replace, with, says string
	}{
		{"server without port", "server: 127.0.0.1:10053", "server: 127.0.0.1", "want host:port"},
		{"no key file", "  tsig_key_file: key.conf\n", "", "tsig_key_file: required"},
		{"MX host not fully qualified", `"10 mx1.new.test."`, `"10 mx1.new.test"`, "fully qualified"},
		{"MX without preference", `"10 mx1.new.test."`, `"mx1.new.test."`, "preference host."},
		{"no legacy hosts", "legacy_mail_hosts: [192.0.2.10]", "legacy_mail_hosts: []", "legacy_mail_hosts: required"},
		{"mail host A not IPv4", "mail_host_a: 198.51.100.25", "mail_host_a: 2001:db8::1", "mail_host_a"},
		{"half an SPF rule", "mail_host_a: 198.51.100.25", "mail_host_a: 198.51.100.25\n  spf: {replace: \"ip4:192.0.2.10\"}", "replace and with go together"},
		{"share above one", "mail_host_a: 198.51.100.25", "mail_host_a: 198.51.100.25\n  max_change_percent: 101", "max_change_percent"},
		{"SRV without protocol", "mail_host_a: 198.51.100.25", "mail_host_a: 198.51.100.25\n  srv: [{service: imaps, port: 993, target: imap.new.test.}]", "_service._proto"},
		{"restore TTL beyond RFC 2181", "mail_host_a: 198.51.100.25", "mail_host_a: 198.51.100.25\n  restore_ttl: 2147483648", "restore_ttl 2147483648"},
		{"unknown key", "mail_host_a: 198.51.100.25", "mail_host_a: 198.51.100.25\n  new_mxs: []", "line 7: field new_mxs not found"},
	}
	if _, err := loadDNS(t, validDNS, t.TempDir(), nil); err != nil {
		t.Fatalf("the valid section: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := strings.Replace(validDNS, tt.replace, tt.with, 1)
			_, err := loadDNS(t, raw, t.TempDir(), nil)
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("err = %v, want it to say %q", err, tt.says)
			}
		})
	}
}

func TestConfigDefaultsAndResolvesTheDNSPaths(t *testing.T) {
	dir := t.TempDir()
	d, err := loadDNS(t, validDNS+"  domains_file: domains.txt\n", dir, []string{"MAILFERRY_DNS_RATE=-1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.TSIGKeyFile != dir+"/key.conf" || d.DomainsFile != dir+"/domains.txt" {
		t.Errorf("paths %q %q, want them under %s", d.TSIGKeyFile, d.DomainsFile, dir)
	}
	if d.Rate != -1 || d.Concurrency != 16 || d.MaxChangePercent != 30 || !*d.VerifyNS || d.NSPort != 53 || d.MailHostLabels[0] != "mail" {
		t.Errorf("defaults %+v", d)
	}
	// Provisioning alone does not switch DNS; a cutover request does.
	if *d.SwitchOnProvisioned || d.RestoreTTL != 3600 {
		t.Errorf("switch_on_provisioned %v, restore_ttl %d: want false and 3600 by default", *d.SwitchOnProvisioned, d.RestoreTTL)
	}
	if d, err := loadDNS(t, "log: {level: info}\n", dir, nil); err != nil || d.Enabled() {
		t.Errorf("a file without a dns section: %+v, %v", d, err)
	}
}

func TestConfigTakesListsFromTheEnvironment(t *testing.T) {
	env := []string{
		"MAILFERRY_DNS_NEW_MX=20 mx2.env.test., 30 mx3.env.test.",
		"MAILFERRY_DNS_VERIFY_SERVERS=",
		"MAILFERRY_DNS_VERIFY_NS=false",
	}
	d, err := loadDNS(t, validDNS+"  verify_servers: [127.0.0.1:53]\n", t.TempDir(), env)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20 mx2.env.test.", "30 mx3.env.test."}; !slices.Equal(d.NewMX, want) {
		t.Errorf("new_mx = %q, want %q", d.NewMX, want)
	}
	if len(d.VerifyServers) != 0 || *d.VerifyNS {
		t.Errorf("verify_servers %q, verify_ns %v: want the environment's empty list and false", d.VerifyServers, *d.VerifyNS)
	}
	// A list of structs has no environment form: refused, naming the
	// variable, instead of ignored.
	_, err = loadDNS(t, validDNS, t.TempDir(), []string{"MAILFERRY_DNS_SRV=_imaps._tcp"})
	if err == nil || !strings.Contains(err.Error(), "MAILFERRY_DNS_SRV") {
		t.Errorf("MAILFERRY_DNS_SRV: err = %v, want it refused by name", err)
	}
}

func TestTheExampleDNSCtlConfigLoads(t *testing.T) {
	c, err := config.Load(filepath.Join("..", "..", "deploy", "dnsctl.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := dnsconfig.Load(c)
	if err != nil || !d.Enabled() {
		t.Fatalf("deploy/dnsctl.yaml: %+v, %v", d, err)
	}
	if c.NATS.SetsMailStream() {
		t.Error("deploy/dnsctl.yaml sets the mail stream's limits, which only the extractor's file should")
	}
}

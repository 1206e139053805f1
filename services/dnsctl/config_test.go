package dnsctl_test

import (
	"strings"
	"testing"

	"github.com/mailferry/mailferry/shared/config"
)

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
	}
	if _, err := config.Parse([]byte(validDNS), t.TempDir(), nil); err != nil {
		t.Fatalf("the valid section: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := strings.Replace(validDNS, tt.replace, tt.with, 1)
			_, err := config.Parse([]byte(raw), t.TempDir(), nil)
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("err = %v, want it to say %q", err, tt.says)
			}
		})
	}
}

func TestConfigDefaultsAndResolvesTheDNSPaths(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse([]byte(validDNS+"  domains_file: domains.txt\n"), dir, []string{"MAILFERRY_DNS_RATE=-1"})
	if err != nil {
		t.Fatal(err)
	}
	d := c.DNS
	if d.TSIGKeyFile != dir+"/key.conf" || d.DomainsFile != dir+"/domains.txt" {
		t.Errorf("paths %q %q, want them under %s", d.TSIGKeyFile, d.DomainsFile, dir)
	}
	if d.Rate != -1 || d.Concurrency != 16 || d.MaxChangePercent != 30 || !*d.VerifyNS || d.NSPort != 53 || d.MailHostLabels[0] != "mail" {
		t.Errorf("defaults %+v", d)
	}
	if _, err := config.Parse([]byte("log: {level: info}\n"), dir, nil); err != nil {
		t.Errorf("a file without a dns section: %v", err)
	}
}

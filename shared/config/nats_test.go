package config

import (
	"strings"
	"testing"
	"time"
)

func TestBrokerSignInSettings(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		inbox      string
		refused    string
	}{
		{name: "a user gets replies in an inbox of its own", yaml: "nats: {url: nats://n1:4222, user: extractor, password_file: pw}", inbox: "_INBOX.extractor"},
		{name: "the environment's user too", yaml: "nats: {url: nats://n1:4222}", env: []string{"MAILFERRY_NATS_USER=loader"}, inbox: "_INBOX.loader"},
		{name: "an inbox prefix set wins", yaml: "nats: {url: nats://n1:4222, user: auth, inbox_prefix: _INBOX.auth.web}", inbox: "_INBOX.auth.web"},
		{name: "an nkey user names its inbox", yaml: "nats: {url: nats://n1:4222, nkey_file: user.nk, inbox_prefix: _INBOX.dnsctl}", inbox: "_INBOX.dnsctl"},
		{name: "without a user the default inbox", yaml: "nats: {url: nats://n1:4222, creds_file: a.creds}", inbox: ""},
		{name: "a user and an nkey", yaml: "nats: {url: nats://n1:4222, user: a, nkey_file: user.nk}", refused: "set one"},
		{name: "a creds file and an nkey", yaml: "nats: {url: nats://n1:4222, creds_file: a.creds, nkey_file: user.nk}", refused: "set one"},
		{name: "a wildcard in the inbox", yaml: "nats: {url: nats://n1:4222, inbox_prefix: _INBOX.*}", refused: "inbox_prefix"},
		{name: "an inbox ending in a dot", yaml: "nats: {url: nats://n1:4222, inbox_prefix: _INBOX.a.}", refused: "inbox_prefix"},
		{name: "an inbox with a space", yaml: "nats: {url: nats://n1:4222, inbox_prefix: \"_INBOX.a b\"}", refused: "inbox_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "/etc/mailferry", tt.env)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("err = %v, want it to say %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NATS.InboxPrefix != tt.inbox {
				t.Errorf("inbox_prefix = %q, want %q", c.NATS.InboxPrefix, tt.inbox)
			}
			if c.NATS.NKeyFile != "" && c.NATS.NKeyFile != "/etc/mailferry/user.nk" {
				t.Errorf("nkey_file = %q, want it resolved against the file's directory", c.NATS.NKeyFile)
			}
		})
	}
}

func TestRefusedLoginsPerHourDefaultToOneAndMayNotBeNegative(t *testing.T) {
	c, err := Parse([]byte("source: {address: 'h:143', auth: user}\n"), "/etc/mailferry", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.MaxLoginFailures != 1 {
		t.Errorf("source.max_login_failures = %d, want the default 1", c.Source.MaxLoginFailures)
	}
	if _, err := Parse([]byte("source: {address: 'h:143', auth: user, max_login_failures: -1}\n"), "/etc/mailferry", nil); err == nil || !strings.Contains(err.Error(), "max_login_failures") {
		t.Errorf("a negative max_login_failures: %v, want it refused", err)
	}
	// An endpoint other sections embed (auth.legacy_imap) is checked
	// without the defaults: 0 is valid there.
	if err := (&IMAP{Address: "h:143", TLS: TLSNone, Auth: AuthUser, Connections: 1}).Validate(); err != nil {
		t.Errorf("an embedded endpoint without defaults: %v", err)
	}
}

func TestATokenOfOneHourIsRenewedInItsLastQuarter(t *testing.T) {
	c, err := Parse([]byte("target: {address: 'h:1', auth: token, opensrs: {url: 'https://oma', user: a, password_file: p, token_hours: 1}}\n"), "/etc/mailferry", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Target.OpenSRS.RenewBefore.Std(); got != 15*time.Minute {
		t.Errorf("renew_before = %v, want 15m", got)
	}
}

func TestTheTargetsOpenSRSClusterGivesItsEndpointAndIMAPHost(t *testing.T) {
	const creds = "user: admin@example.com, password_file: oma.pw"
	tests := []struct {
		name, target, url, address, refused string
	}{
		{name: "cluster a", target: "{auth: token, opensrs: {cluster: a, " + creds + "}}",
			url: "https://admin.a.hostedemail.com/api", address: "mail.a.hostedemail.com:993"},
		{name: "an address of its own wins", target: "{address: 'imap.example.net:993', auth: token, opensrs: {cluster: test, " + creds + "}}",
			url: "https://admin.test.hostedemail.com/api", address: "imap.example.net:993"},
		{name: "a URL of another cluster", target: "{auth: token, opensrs: {cluster: b, url: 'https://admin.a.hostedemail.com/api', " + creds + "}}", refused: "cluster a's endpoint, not cluster b's"},
		{name: "an IMAP host of another cluster", target: "{address: 'mail.b.hostedemail.com:993', auth: token, opensrs: {cluster: a, " + creds + "}}", refused: "cluster b's IMAP host"},
		{name: "a cluster nobody knows", target: "{auth: token, opensrs: {cluster: c, " + creds + "}}", refused: `opensrs.cluster "c"`},
		{name: "neither cluster nor url", target: "{address: 'h:993', auth: token, opensrs: {" + creds + "}}", refused: "cluster (or url)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("target: "+tt.target+"\n"), "/etc/mailferry", nil)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("err = %v, want it to say %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Target.OpenSRS.URL != tt.url || c.Target.Address != tt.address {
				t.Errorf("url %q, address %q; want %q, %q", c.Target.OpenSRS.URL, c.Target.Address, tt.url, tt.address)
			}
		})
	}
}

package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// owned stands for a service's section type.
type owned struct {
	Server  string            `yaml:"server"`
	KeyFile string            `yaml:"key_file" config:"path"`
	Hosts   []string          `yaml:"hosts"`
	Ports   []int             `yaml:"ports"`
	Map     map[string]string `yaml:"map"`
	Nested  struct {
		Dir     string   `yaml:"dir" config:"path"`
		Timeout Duration `yaml:"timeout"`
		On      *bool    `yaml:"on"`
	} `yaml:"nested"`
	Records []struct {
		Name string `yaml:"name"`
	} `yaml:"records"`
}

func TestParseReportsUnknownTopLevelSectionsAndAcceptsOwnedOnes(t *testing.T) {
	if _, err := Parse([]byte("dns: {anything: 1}\nauth: {provider: x}\nextractor: {anything: 1}\nloader: {anything: 1}\n"), ".", nil); err != nil {
		t.Errorf("owned sections refused: %v", err)
	}
	_, err := Parse([]byte("log: {level: info}\ndnsctl: {server: x}\n"), ".", nil)
	if err == nil || !strings.Contains(err.Error(), "line 2: field dnsctl not found") {
		t.Errorf("unknown section: err = %v, want it named with its line", err)
	}
}

func TestSectionDecodesStrictlyWithEnvironmentAndPaths(t *testing.T) {
	raw := "log: {level: info}\ndns:\n  server: 127.0.0.1:53\n  key_file: tsig.key\n  nested: {dir: /abs, timeout: 5s}\n"
	c, err := Parse([]byte(raw), "/etc/mf", []string{"MAILFERRY_DNS_NESTED_TIMEOUT=7s", "MAILFERRY_AUTH_SERVER=not-mine"})
	if err != nil {
		t.Fatal(err)
	}
	var o owned
	if err := c.Section("dns", &o); err != nil {
		t.Fatal(err)
	}
	if o.Server != "127.0.0.1:53" || o.KeyFile != "/etc/mf/tsig.key" || o.Nested.Dir != "/abs" || o.Nested.Timeout.Std() != 7*time.Second {
		t.Errorf("section = %+v", o)
	}

	c, err = Parse([]byte("dns:\n  server: x\n  sever: y\n"), ".", nil)
	if err != nil {
		t.Fatalf("Parse looked inside an owned section: %v", err)
	}
	err = c.Section("dns", &owned{})
	if err == nil || !strings.Contains(err.Error(), "line 3: field sever not found") {
		t.Errorf("unknown key: err = %v, want it named with the file's line", err)
	}
	if err := c.Section("nats", &owned{}); err == nil {
		t.Error("Section decoded a shared section")
	}
	var absent owned
	if err := c.Section("auth", &absent); err != nil || !reflect.ValueOf(absent).IsZero() {
		t.Errorf("absent section: %+v, %v", absent, err)
	}
}

func TestEnvironmentOverridesListsAndMaps(t *testing.T) {
	yes := true
	tests := []struct {
		name  string
		env   string
		check func(o owned) bool
		fails string
	}{
		{"list of strings", "MAILFERRY_DNS_HOSTS=a.example., b.example.", func(o owned) bool {
			return reflect.DeepEqual(o.Hosts, []string{"a.example.", "b.example."})
		}, ""},
		{"list of one", "MAILFERRY_DNS_HOSTS=10 mx1.example.", func(o owned) bool {
			return reflect.DeepEqual(o.Hosts, []string{"10 mx1.example."})
		}, ""},
		{"empty list", "MAILFERRY_DNS_HOSTS=", func(o owned) bool { return o.Hosts != nil && len(o.Hosts) == 0 }, ""},
		{"list of numbers", "MAILFERRY_DNS_PORTS=53,5353", func(o owned) bool {
			return reflect.DeepEqual(o.Ports, []int{53, 5353})
		}, ""},
		{"map", "MAILFERRY_DNS_MAP=Sent Items=Sent, Deleted Items = Trash,a=b=c", func(o owned) bool {
			return reflect.DeepEqual(o.Map, map[string]string{"Sent Items": "Sent", "Deleted Items": "Trash", "a": "b=c"})
		}, ""},
		{"empty map", "MAILFERRY_DNS_MAP=", func(o owned) bool { return o.Map != nil && len(o.Map) == 0 }, ""},
		{"pointer to bool", "MAILFERRY_DNS_NESTED_ON=true", func(o owned) bool { return *o.Nested.On == yes }, ""},
		{"empty item", "MAILFERRY_DNS_HOSTS=a,,b", nil, "MAILFERRY_DNS_HOSTS: item 2 is empty"},
		{"bad number in a list", "MAILFERRY_DNS_PORTS=53,dns", nil, `MAILFERRY_DNS_PORTS: item 2 "dns"`},
		{"map item without =", "MAILFERRY_DNS_MAP=Sent", nil, `MAILFERRY_DNS_MAP: item "Sent": want key=value`},
		{"map key twice", "MAILFERRY_DNS_MAP=a=1,a=2", nil, `MAILFERRY_DNS_MAP: key "a" given twice`},
		{"list of structs", "MAILFERRY_DNS_RECORDS=x", nil, "MAILFERRY_DNS_RECORDS: a list of struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("dns: {hosts: [file.example.], map: {x: y}}\n"), ".", []string{tt.env})
			if err != nil {
				t.Fatal(err)
			}
			var o owned
			err = c.Section("dns", &o)
			if tt.fails != "" {
				if err == nil || !strings.Contains(err.Error(), tt.fails) {
					t.Fatalf("err = %v, want %q", err, tt.fails)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Errorf("%s gave %+v", tt.env, o)
			}
		})
	}
}

func TestSetsMailStreamTellsWhetherTheFileSetTheMailLimits(t *testing.T) {
	tests := []struct {
		yaml string
		env  []string
		want bool
	}{
		{"nats: {url: nats://x:4222}", nil, false},
		{"nats: {mail_max_age: 720h}", nil, true},
		{"nats: {mail_max_bytes: 1000}", nil, true},
		{"", []string{"MAILFERRY_NATS_MAIL_MAX_AGE=24h"}, true},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.yaml), ".", tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.NATS.SetsMailStream(); got != tt.want {
			t.Errorf("%q %q: SetsMailStream = %v, want %v", tt.yaml, tt.env, got, tt.want)
		}
	}
}

func TestMemoryLimitLeavesTheDefaultToTheProcessAndRefusesLessThan32MiB(t *testing.T) {
	tests := []struct {
		yaml    string
		want    int64
		wantErr bool
	}{
		{"", 0, false},
		{"memory_limit: -1", -1, false},
		{"memory_limit: 536870912", 512 << 20, false},
		{"memory_limit: 1000", 0, true},
		{"memory_limit: -2", 0, true},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.yaml), ".", nil)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "memory_limit") {
				t.Errorf("%q: error %v, want one naming memory_limit", tt.yaml, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if c.MemoryLimit != tt.want {
			t.Errorf("%q: memory_limit %d, want %d", tt.yaml, c.MemoryLimit, tt.want)
		}
	}
}

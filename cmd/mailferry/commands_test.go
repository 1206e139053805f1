package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dnscli "github.com/mailferry/mailferry/services/dnsctl/cli"
	"github.com/mailferry/mailferry/shared/command"
)

// commandFlags is every command of mailferry with exactly the flags it
// takes; a command added to the table must be added here.
var commandFlags = map[string][]string{
	"demo":                    {"mailboxes", "seed"},
	"migrate":                 {"c", "json"},
	"verify":                  {"c", "json", "mailbox", "resync-flags", "since-switch"},
	"verify accept":           {"all", "c", "folder", "mailbox", "reason", "since-switch", "uid"},
	"status":                  {"c", "json", "watch"},
	"dashboard":               {"c"},
	"enqueue":                 {"c"},
	"deadletter list":         {"c", "json", "mailbox"},
	"deadletter show":         {"c", "seq"},
	"deadletter retry":        {"all", "c", "mailbox", "seq", "wait"},
	"replay":                  {"c", "folder", "from-seq", "mailbox", "since", "wait"},
	"nats":                    {"c", "config"},
	"extractor":               {"c"},
	"loader":                  {"c"},
	"dnsctl":                  {"c"},
	"delta":                   {"c"},
	"cutover plan":            {"c", "json"},
	"cutover start":           {"all", "c", "domain", "wait"},
	"cutover status":          {"c", "domain", "json", "watch"},
	"cutover pause":           {"c", "domain", "reason"},
	"cutover resume":          {"c", "domain"},
	"cutover abort":           {"c", "domain", "reason"},
	"cutover retry":           {"c", "domain"},
	"cutover close":           {"c", "domain"},
	"cutover run":             {"c"},
	"dns plan":                {"c", "domain", "json"},
	"dns apply":               {"c", "domain", "dry-run", "force", "json", "no-verify", "replan"},
	"dns verify":              {"c", "domain", "json"},
	"dns rollback":            {"all", "c", "domain", "dry-run", "json"},
	"dns lower-ttl":           {"c", "domain", "dry-run", "force", "json", "ttl"},
	"dns restore-ttl":         {"c", "domain", "dry-run", "force", "json", "ttl"},
	"dns status":              {"c", "domain", "json"},
	"dns cutover":             {"c", "domain"},
	"users import":            {"c", "file", "json"},
	"users import-mailenable": {"auth-tab", "c", "json", "postoffice-map"},
	"users list":              {"c", "json"},
	"provision":               {"c", "json"},
	"auth":                    {"c"},
}

// mailferry runs a command line the way the binary does and returns its
// exit status and output.
func mailferry(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args[0], args[1:], &out, &errOut)
	return command.ExitCode(err), out.String(), errOut.String()
}

var flagLine = regexp.MustCompile(`(?m)^  -([a-z-]+)`)

func TestEveryCommandsHelpListsExactlyItsFlags(t *testing.T) {
	for _, c := range program.Commands {
		t.Run(c.Name, func(t *testing.T) {
			want, ok := commandFlags[c.Name]
			if !ok {
				t.Fatalf("%s is not in commandFlags", c.Name)
			}
			code, out, errOut := mailferry(t, append(strings.Fields(c.Name), "-h")...)
			if code != 0 || errOut != "" {
				t.Errorf("-h: exit %d, stderr %q; want 0 and nothing", code, errOut)
			}
			var got []string
			for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
				got = append(got, m[1])
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s -h lists %v, want %v:\n%s", c.Name, got, want, out)
			}
			if !strings.HasPrefix(out, "usage: mailferry "+c.Name+" ") {
				t.Errorf("%s -h does not begin with its usage line:\n%s", c.Name, out)
			}
		})
	}
	if len(program.Commands) != len(commandFlags) {
		t.Errorf("the table has %d commands, commandFlags %d", len(program.Commands), len(commandFlags))
	}
}

func TestHelpListsEveryCommandOfTheTable(t *testing.T) {
	code, out, _ := mailferry(t, "help")
	if code != 0 {
		t.Errorf("help: exit %d", code)
	}
	for name := range commandFlags {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `  `).MatchString(out) {
			t.Errorf("help does not list %q:\n%s", name, out)
		}
		code, detail, _ := mailferry(t, append([]string{"help"}, strings.Fields(name)...)...)
		if code != 0 || !strings.HasPrefix(detail, "usage: mailferry "+name+" ") {
			t.Errorf("help %s: exit %d\n%s", name, code, detail)
		}
	}
}

func TestCommandLineAndConfigurationMistakesExitTwoBeforeAnythingRuns(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("source:\n  address: mail.example:993\n  tls: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noListen := filepath.Join(dir, "no-listen.yaml")
	if err := os.WriteFile(noListen, []byte("nats: {data_dir: nats}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	noInventory := filepath.Join(dir, "no-inventory.yaml")
	if err := os.WriteFile(noInventory, []byte("mailboxes: {file: nowhere.csv}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDNS := filepath.Join(dir, "bad-dns.yaml")
	if err := os.WriteFile(badDNS, []byte("dns: {server: 127.0.0.1:53, zone_keys: 3}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"migrate", "-seq", "3"}, "mailferry: migrate: flag provided but not defined: -seq"},
		{[]string{"migrate", "-seq", "3", "-watch"}, "mailferry: migrate: flag provided but not defined: -seq"},
		{[]string{"nats", "-since", "2026-01-01T00:00:00Z"}, "mailferry: nats: flag provided but not defined: -since"},
		{[]string{"status", "extra"}, `mailferry: status: unexpected argument "extra"`},
		{[]string{"fly"}, `mailferry: unknown command "fly"`},
		{[]string{"deadletter"}, "mailferry: deadletter: want one of list, show, retry"},
		{[]string{"deadletter", "drop"}, `mailferry: deadletter: unknown command "drop"`},
		{[]string{"deadletter", "show", "-c", missing}, "mailferry: deadletter show: pass -seq N"},
		{[]string{"deadletter", "retry", "-c", missing}, "mailferry: deadletter retry: pass -seq N, -mailbox M or -all"},
		{[]string{"deadletter", "retry", "-c", missing, "-seq", "4", "-all"}, "mailferry: deadletter retry: pass -seq N alone"},
		{[]string{"replay", "-c", missing}, "mailferry: replay: pass -mailbox M"},
		{[]string{"replay", "-c", missing, "-mailbox", "a", "-from-seq", "3", "-since", "2026-01-01T00:00:00Z"}, "mailferry: replay: pass -from-seq N or -since T, not both"},
		{[]string{"replay", "-c", missing, "-mailbox", "a", "-since", "yesterday"}, `mailferry: replay: -since: parsing time "yesterday"`},
		{[]string{"dns"}, "mailferry: dns: want one of plan, apply"},
		{[]string{"dns", "rollback", "-c", missing}, "mailferry: dns rollback: pass either -domain D or -all"},
		{[]string{"dns", "plan", "-dry-run"}, "mailferry: dns plan: flag provided but not defined: -dry-run"},
		{[]string{"dns", "cutover", "-json"}, "mailferry: dns cutover: flag provided but not defined: -json"},
		{[]string{"users"}, "mailferry: users: want one of import, import-mailenable, list"},
		{[]string{"users", "import-mailenable", "-c", missing}, "mailferry: users import-mailenable: pass -auth-tab AUTH.TAB"},
		{[]string{"users", "import", "-c", missing}, "mailferry: users import: pass -file users.csv"},
		{[]string{"auth", "-json"}, "mailferry: auth: flag provided but not defined: -json"},
		{[]string{"help", "fly"}, `mailferry: unknown help topic "fly"`},
		// Configuration errors.
		{[]string{"migrate", "-c", missing}, "mailferry: migrate: read config: open " + missing},
		{[]string{"verify", "-c", bad}, `mailferry: verify: config ` + bad},
		{[]string{"loader", "-c", bad}, `mailferry: loader: config ` + bad},
		{[]string{"dns", "status", "-c", missing}, "mailferry: dns status: read config"},
		{[]string{"provision", "-c", bad}, "mailferry: provision: config " + bad},
		{[]string{"nats", "-c", noListen}, "mailferry: nats: set nats.listen"},
		{[]string{"status", "-c", noInventory}, "mailferry: status: read mailboxes"},
		{[]string{"verify", "-c", noInventory}, "mailferry: verify: read mailboxes"},
		{[]string{"dns", "status", "-c", badDNS}, "mailferry: dns status: "},
		{[]string{"dnsctl", "-c", badDNS}, "mailferry: dnsctl: "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := mailferry(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\n%s", code, errOut)
			}
			if !strings.HasPrefix(errOut, tt.says) || strings.Count(errOut, "mailferry: ") != 1 {
				t.Errorf("stderr %q, want it to begin with %q, once", errOut, tt.says)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestABadSectionOfTheServicesOwnExitsTwoBeforeTheBrokerStarts(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		section string
		env     string
		says    string
	}{
		{"extractor: unknown key", []string{"extractor"}, "extractor:\n  concurency: 2\n", "", "line 4: field concurency not found"},
		{"extractor: body over the broker's limit", []string{"extractor"}, "extractor: {large_message_bytes: 2000000}\n", "", "extractor: large_message_bytes 2000000"},
		{"loader: unknown key", []string{"loader"}, "loader:\n  batch_mesages: 4\n", "", "line 4: field batch_mesages not found"},
		{"loader: bad folder map override", []string{"loader"}, "", "MAILFERRY_LOADER_FOLDER_MAP=Sent", `MAILFERRY_LOADER_FOLDER_MAP: item "Sent": want key=value`},
		{"dnsctl: unknown key", []string{"dnsctl"}, "dns:\n  server: 127.0.0.1:53\n  zone_keys: 3\n", "", "line 5: field zone_keys not found"},
		{"auth: unknown key", []string{"auth"}, "auth:\n  provder: dovecot\n", "", "line 4: field provder not found"},
		{"migrate: the loader's section", []string{"migrate"}, "loader: {lease_ttl: soon}\n", "", `duration "soon"`},
		{"migrate: the extractor's section", []string{"migrate"}, "extractor: {checkpoint_every: often}\n", "", "extractor: "},
		{"verify: the loader's section", []string{"verify"}, "loader: {folder_map: [a]}\n", "", "loader: "},
		{"replay -wait: the loader's section", []string{"replay", "-mailbox", "a@old.example", "-wait"}, "loader: {concurrency: some}\n", "", "loader: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				k, v, _ := strings.Cut(tt.env, "=")
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte("source_user,target_user\na@old.example,a@new.example\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "mailferry.yaml")
			// No nats.url: the command would start an embedded server.
			yaml := "nats: {data_dir: nats}\nmailboxes: {file: mailboxes.csv}\n" + tt.section
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := mailferry(t, append(tt.args, "-c", path)...)
			if code != 2 {
				t.Errorf("exit %d, want 2\n%s", code, errOut)
			}
			if prefix := "mailferry: " + tt.args[0] + ": "; !strings.HasPrefix(errOut, prefix) || !strings.Contains(errOut, tt.says) {
				t.Errorf("stderr %q, want it to begin with %q and say %q", errOut, prefix, tt.says)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "nats")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the broker's data directory exists (err %v): the broker was started", err)
			}
		})
	}
}

func TestDifferencesExitOneWithoutAnErrorMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startDemo(ctx, t, 1, 7)
	// Nothing was migrated: every message is missing at the target.
	code, out, errOut := mailferry(t, "verify", "-c", env.ConfigPath)
	if code != 1 {
		t.Errorf("verify of an empty target: exit %d, want 1\n%s", code, errOut)
	}
	if !strings.Contains(out, "1 different") || strings.Contains(errOut, "mailferry: ") {
		t.Errorf("want the differences in the report and no error line; stdout:\n%s\nstderr:\n%s", out, errOut)
	}
	for _, err := range []error{errDifferent, dnscli.ErrFailures} {
		if !errors.Is(err, command.ErrFailures) || command.ExitCode(err) != 1 {
			t.Errorf("%v: exit %d, want 1 and no message", err, command.ExitCode(err))
		}
	}
}

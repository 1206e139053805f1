package main

import (
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/cmd/mailferry/dashboard"
	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/metrics"
)

// configKeys is every key a configuration file may set, as a dotted path
// (nats.password_file, auth.policy.min_length; a list's items add no
// segment: dns.srv.port), read from the types that decode the file: the
// shared sections (config.Config) and each owner's section.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	addKeys(keys, "", reflect.TypeOf(config.Config{}))
	for section, v := range map[string]any{
		"extractor": extractor.Settings{}, "loader": loader.Settings{},
		"dns": dnsconfig.DNS{}, "auth": authconfig.Auth{},
		"cutover": cutover.Settings{}, "dashboard": dashboard.Settings{},
		"metrics": metrics.Settings{},
	} {
		keys[section] = true
		addKeys(keys, section+".", reflect.TypeOf(v))
	}
	return keys
}

func addKeys(keys map[string]bool, prefix string, t reflect.Type) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if opts == "inline" {
			addKeys(keys, prefix, f.Type)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys[prefix+name] = true
		addKeys(keys, prefix+name+".", f.Type)
	}
}

// codeSpan is Markdown inline code; keyToken a dotted name in it.
var (
	codeSpan  = regexp.MustCompile("`([^`\n]+)`")
	keyToken  = regexp.MustCompile(`[a-z_]+(?:\.[a-z_0-9]+)*`)
	yamlFence = regexp.MustCompile("(?s)```yaml\n(.*?)```")
)

// readmeKeys are the configuration keys a Markdown file names: every
// inline code span's dotted names that are keys (`nats.listen`,
// `cutover.domains_in_flight`, `memory_limit`; an event such as
// `dns.switched` is not one), and every key of its yaml code blocks.
// A key named without its section (`command_timeout`) is not counted:
// the README writes keys with their section.
func readmeKeys(t *testing.T, text string, known map[string]bool) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
		for _, tok := range keyToken.FindAllString(m[1], -1) {
			if known[tok] {
				found[tok] = true
			}
		}
	}
	for _, m := range yamlFence.FindAllStringSubmatch(text, -1) {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(m[1]), &doc); err != nil {
			t.Fatalf("a yaml block does not parse: %v\n%s", err, m[1])
		}
		paths := map[string]bool{}
		yamlPaths(paths, "", &doc)
		for p := range paths {
			if known[p] {
				found[p] = true
			}
		}
	}
	return found
}

// yamlPaths adds the dotted path of every mapping key under n.
func yamlPaths(paths map[string]bool, prefix string, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			yamlPaths(paths, prefix, c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := prefix + n.Content[i].Value
			paths[p] = true
			yamlPaths(paths, p+".", n.Content[i+1])
		}
	}
}

// commentedKey is a key an example keeps commented: `# key: value` with
// the # where the key would start, so that deleting "# " makes it part
// of the file (a value that would be wrong in production stays
// commented, and is still shown where it belongs).
var commentedKey = regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+:(?:\s.*)?)$`)

// exampleKeys are the keys deploy/*.yaml set or show commented.
func exampleKeys(t *testing.T) (map[string]bool, map[string][]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/*.yaml: %v", err)
	}
	keys := map[string]bool{}
	where := map[string][]string{}
	for _, f := range files {
		text := commentedKey.ReplaceAllString(readFile(t, f), "$1$2")
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatalf("%s with its commented keys uncommented does not parse: %v", f, err)
		}
		paths := map[string]bool{}
		yamlPaths(paths, "", &doc)
		for p := range paths {
			keys[p] = true
			where[p] = append(where[p], filepath.Base(f))
		}
	}
	return keys, where
}

// TestEveryKeyTheREADMEsNameIsInADeployExample: a key README.md or
// deploy/README.md tells operators about is set, or shown commented, in
// one of deploy/*.yaml, so that the examples show every knob the
// documentation mentions where it goes.
func TestEveryKeyTheREADMEsNameIsInADeployExample(t *testing.T) {
	known := configKeys()
	examples, _ := exampleKeys(t)
	for _, doc := range []string{"../../README.md", filepath.Join(deployDir, "README.md")} {
		keys := readmeKeys(t, readFile(t, doc), known)
		if len(keys) < 10 {
			t.Errorf("%s: found only %d keys (%v): does it still write them as `section.key`?", doc, len(keys), keys)
		}
		var missing []string
		for k := range keys {
			if !examples[k] {
				missing = append(missing, k)
			}
		}
		sort.Strings(missing)
		for _, k := range missing {
			t.Errorf("%s names %s, which no deploy/*.yaml sets or shows commented", doc, k)
		}
	}
}

// TestEveryKeyOfTheDeployExamplesIsAKeyOfItsSection: the examples,
// commented keys included, hold no key that mailferry does not read (a
// misspelt commented key would mislead whoever uncomments it).
func TestEveryKeyOfTheDeployExamplesIsAKeyOfItsSection(t *testing.T) {
	known := configKeys()
	examples, where := exampleKeys(t)
	var unknown []string
	for k := range examples {
		if !known[k] && !underMap(k, known) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		t.Errorf("%v: %s is no configuration key", where[k], k)
	}
}

// underMap reports whether k is inside a key whose value is a map of
// free keys (loader.folder_map."Sent Items").
func underMap(k string, known map[string]bool) bool {
	for _, m := range []string{"loader.folder_map.", "loader.special_folders."} {
		if strings.HasPrefix(k, m) && known[strings.TrimSuffix(m, ".")] {
			return true
		}
	}
	return false
}

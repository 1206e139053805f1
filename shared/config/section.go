package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PathTag marks a string field of an owned section that holds a file or
// directory name: Section resolves it against the configuration's
// directory, as Load does for the shared sections' paths.
//
//	TSIGKeyFile string `yaml:"tsig_key_file" config:"path"`
const PathTag = "path"

// Section decodes the owned top-level section name (extractor, loader,
// dns or auth) into v, a pointer to the owner's struct: strictly (a key v
// does not know is an error naming its line), then with
// MAILFERRY_<NAME>_<KEY> environment overrides, then resolving the fields
// tagged config:"path" against the file's directory. An absent section leaves v as it was.
// Defaults and validation are the owner's: they come after, in the
// owner's package.
func (c *Config) Section(name string, v any) error {
	if !slices.Contains(ownedSections, name) {
		return fmt.Errorf("config: %q is not a section its owner decodes (want one of %s)", name, strings.Join(ownedSections, ", "))
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: section %s: want a pointer to a struct, not %T", name, v)
	}
	if err := decodeStrict(c.raw, v, name); err != nil {
		return err
	}
	if err := applyEnv(rv.Elem(), EnvPrefix+strings.ToUpper(name)+"_", c.env); err != nil {
		return err
	}
	c.resolveTagged(rv.Elem())
	return nil
}

// topLevel lists every top-level key a file may have: the shared
// sections Config decodes and the owned ones.
func topLevel() []string {
	t := reflect.TypeFor[Config]()
	var out []string
	for i := range t.NumField() {
		if tag := yamlName(t.Field(i)); tag != "" {
			out = append(out, tag)
		}
	}
	return append(out, ownedSections...)
}

// decodeStrict decodes the YAML document raw into v, refusing unknown
// keys. With section empty, v is the *Config and the owned sections are
// accepted unread; otherwise only that top-level section is decoded into
// v, the others skipped. Decoding the whole document each time keeps the
// line numbers of errors those of the file.
func decodeStrict(raw []byte, v any, section string) error {
	nodeType := reflect.TypeFor[yaml.Node]()
	var fields []reflect.StructField
	if section == "" {
		fields = append(fields, reflect.StructField{
			Name: "Shared", Type: reflect.TypeOf(v).Elem(), Tag: `yaml:",inline"`,
		})
		for i, name := range ownedSections {
			fields = append(fields, reflect.StructField{
				Name: fmt.Sprintf("Owned%d", i), Type: nodeType, Tag: reflect.StructTag(fmt.Sprintf("yaml:%q", name)),
			})
		}
	} else {
		for i, name := range topLevel() {
			typ := nodeType
			if name == section {
				typ = reflect.TypeOf(v).Elem()
			}
			fields = append(fields, reflect.StructField{
				Name: fmt.Sprintf("Section%d", i), Type: typ, Tag: reflect.StructTag(fmt.Sprintf("yaml:%q", name)),
			})
		}
	}
	wrapper := reflect.New(reflect.StructOf(fields))
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file is a valid, all-default configuration.
	if err := dec.Decode(wrapper.Interface()); err != nil && !errors.Is(err, io.EOF) {
		if section != "" {
			return fmt.Errorf("%s: %w", section, err)
		}
		return err
	}
	out := reflect.ValueOf(v).Elem()
	if section == "" {
		out.Set(wrapper.Elem().Field(0))
		return nil
	}
	for i, name := range topLevel() {
		if name == section {
			f := wrapper.Elem().Field(i)
			// A section the file leaves out keeps what v held.
			if !f.IsZero() {
				out.Set(f)
			}
		}
	}
	return nil
}

// resolveTagged resolves, in v and the structs it holds, every string
// field tagged config:"path".
func (c *Config) resolveTagged(v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		switch {
		case fv.Kind() == reflect.Struct:
			c.resolveTagged(fv)
		case fv.Kind() == reflect.String && f.Tag.Get("config") == PathTag:
			fv.SetString(c.Path(fv.String()))
		}
	}
}

// yamlName is the key of a field in YAML, "" when it has none.
func yamlName(f reflect.StructField) string {
	tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
	if tag == "-" || !f.IsExported() {
		return ""
	}
	return tag
}

package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Environment overrides: MAILFERRY_<SECTION>_<KEY> (nested keys joined by
// '_', all upper case) replaces the file's value.
//
//   - A scalar (string, number, boolean, duration such as 90s) is the
//     variable's value.
//   - A list of scalars is comma-separated: MAILFERRY_DNS_NEW_MX="10
//     mx1.new.example.,20 mx2.new.example.". Spaces around items are
//     dropped, an empty item is an error and an empty value is an empty
//     list. There is no escaping: an item that needs a comma is set in
//     the file.
//   - A map of scalars is key=value pairs, comma-separated:
//     MAILFERRY_LOADER_FOLDER_MAP="Sent Items=Sent,Deleted Items=Trash".
//     A key ends at its first '='; the same rules about commas hold.
//   - Anything else (a list of structs such as dns.srv) cannot be set
//     from the environment: a variable naming one is an error, never
//     ignored.

// errNotExpressible marks a key whose type has no environment form.
var errNotExpressible = errors.New("cannot be set from the environment: set it in the file")

// applyEnv walks the yaml-tagged fields of v and overrides them from env
// variables named prefix + upper-cased path.
func applyEnv(v reflect.Value, prefix string, env []string) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := yamlName(f)
		if tag == "" {
			continue
		}
		name := prefix + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := applyEnv(fv, name+"_", env); err != nil {
				return err
			}
			continue
		}
		val, ok := lookup(env, name)
		if !ok {
			continue
		}
		if err := setFromEnv(fv, val); err != nil {
			return fmt.Errorf("env %s: %w", name, err)
		}
	}
	return nil
}

func lookup(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// setFromEnv sets a scalar, a list of scalars or a map of scalars from
// the variable's value.
func setFromEnv(fv reflect.Value, val string) error {
	switch fv.Kind() {
	case reflect.Slice:
		if !isScalar(fv.Type().Elem()) {
			return fmt.Errorf("a list of %s %w", fv.Type().Elem(), errNotExpressible)
		}
		items, err := splitList(val)
		if err != nil {
			return err
		}
		s := reflect.MakeSlice(fv.Type(), len(items), len(items))
		for i, it := range items {
			if err := setScalar(s.Index(i), it); err != nil {
				return fmt.Errorf("item %d %q: %w", i+1, it, err)
			}
		}
		fv.Set(s)
		return nil
	case reflect.Map:
		if !isScalar(fv.Type().Key()) || !isScalar(fv.Type().Elem()) {
			return fmt.Errorf("a map of %s to %s %w", fv.Type().Key(), fv.Type().Elem(), errNotExpressible)
		}
		items, err := splitList(val)
		if err != nil {
			return err
		}
		m := reflect.MakeMapWithSize(fv.Type(), len(items))
		for _, it := range items {
			k, v, ok := strings.Cut(it, "=")
			if !ok {
				return fmt.Errorf("item %q: want key=value", it)
			}
			key, elem := reflect.New(fv.Type().Key()).Elem(), reflect.New(fv.Type().Elem()).Elem()
			if err := setScalar(key, strings.TrimSpace(k)); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			if err := setScalar(elem, strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("value of %q: %w", k, err)
			}
			if m.MapIndex(key).IsValid() {
				return fmt.Errorf("key %q given twice", k)
			}
			m.SetMapIndex(key, elem)
		}
		fv.Set(m)
		return nil
	}
	return setScalar(fv, val)
}

// splitList splits a comma-separated value; an empty value is no item.
func splitList(val string) ([]string, error) {
	if strings.TrimSpace(val) == "" {
		return []string{}, nil
	}
	items := strings.Split(val, ",")
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
		if items[i] == "" {
			return nil, fmt.Errorf("item %d is empty (a comma always separates items)", i+1)
		}
	}
	return items, nil
}

var durationType = reflect.TypeFor[Duration]()

// isScalar reports whether a value of t is one environment token.
func isScalar(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func setScalar(fv reflect.Value, val string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(val)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(val, 10, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(val, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Pointer:
		if !isScalar(fv.Type()) {
			return fmt.Errorf("a %s %w", fv.Type(), errNotExpressible)
		}
		p := reflect.New(fv.Type().Elem())
		if err := setScalar(p.Elem(), val); err != nil {
			return err
		}
		fv.Set(p)
	default:
		return fmt.Errorf("a %s %w", fv.Type(), errNotExpressible)
	}
	return nil
}

// Package corpus finds the shared test corpus of real-world hard messages,
// which lives beside the repository (../shared/corpus) and is never copied
// into it.
package corpus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// Dir returns the corpus directory: $MAILFERRY_CORPUS, else
// ../shared/corpus seen from the repository root (the directory holding
// go.work), searched upwards from the working directory.
func Dir() (string, error) {
	if d := os.Getenv("MAILFERRY_CORPUS"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			c := filepath.Join(d, "..", "shared", "corpus")
			if _, err := os.Stat(c); err != nil {
				return "", fmt.Errorf("corpus not found at %s: %w", c, err)
			}
			return filepath.Clean(c), nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("corpus: no go.work above the working directory")
		}
	}
}

// Files lists the corpus messages (*.eml), sorted.
func Files() ([]string, error) {
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("read corpus: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".eml") {
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// FilesT is Files for tests: it skips the test, saying why, when the
// corpus is absent (a clone outside the workplace still passes).
func FilesT(t rig.TB) []string {
	t.Helper()
	fs, err := Files()
	if err != nil || len(fs) == 0 {
		t.Skipf("shared corpus absent (%v): put it at ../shared/corpus or set MAILFERRY_CORPUS", err)
	}
	return fs
}

package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

func TestProfileWritesCPUAndHeapProfiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profiles")
	stop, err := Profile(dir, "loader")
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"loader.cpu.pprof", "loader.heap.pprof"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v (size %v)", name, err, fi)
		}
	}
}

func TestNoProfileWithoutTheVariable(t *testing.T) {
	t.Setenv(PprofDirEnv, "")
	stop := profileFromEnv("extractor", zerolog.Nop())
	// Only one CPU profile runs at a time: this one starts only if the
	// unset variable started none.
	dir := t.TempDir()
	end, err := Profile(dir, "probe")
	if err != nil {
		t.Fatalf("a CPU profile runs without %s: %v", PprofDirEnv, err)
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	stop()

	t.Setenv(PprofDirEnv, dir)
	profileFromEnv("extractor", zerolog.Nop())()
	for _, name := range []string{"extractor.cpu.pprof", "extractor.heap.pprof"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("with %s set: %v", PprofDirEnv, err)
		}
	}
}

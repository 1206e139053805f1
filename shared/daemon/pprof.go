package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"

	"github.com/rs/zerolog"
)

// PprofDirEnv names the environment variable that makes a service process
// profile itself, for developers (mailferry-lab bench -pprof sets it): when
// it holds a directory, Run writes NAME.cpu.pprof there (CPU profile of the
// whole run) and NAME.heap.pprof (heap profile when the service stops,
// with what it allocated since it started). Unset, nothing is profiled or
// written; no process ever listens for profiling requests.
const PprofDirEnv = "MAILFERRY_PPROF_DIR"

// Profile starts a CPU profile of this process into dir/NAME.cpu.pprof
// (creating dir); stop ends it and writes dir/NAME.heap.pprof, the heap
// as of a fresh garbage collection (in use now, and allocated since the
// process started). One CPU profile at a time per process.
func Profile(dir, name string) (stop func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	cpuPath := filepath.Join(dir, name+".cpu.pprof")
	f, err := os.Create(cpuPath)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profile %s: %w", cpuPath, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return errors.Join(f.Close(), writeHeapProfile(filepath.Join(dir, name+".heap.pprof")))
	}, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return f.Close()
}

// profileFromEnv profiles service name when PprofDirEnv is set (see
// Profile) and returns what stops it; a profile that cannot be written is
// logged, never an error of the service.
func profileFromEnv(name string, log zerolog.Logger) (stop func()) {
	dir := os.Getenv(PprofDirEnv)
	if dir == "" {
		return func() {}
	}
	end, err := Profile(dir, name)
	if err != nil {
		log.Warn().Err(err).Msg("not profiled (" + PprofDirEnv + ")")
		return func() {}
	}
	log.Info().Str("dir", dir).Msg("profiling into " + name + ".cpu.pprof and " + name + ".heap.pprof (" + PprofDirEnv + ")")
	return func() {
		if err := end(); err != nil {
			log.Warn().Err(err).Msg("profile not written")
		}
	}
}

// Package shipped finds the mailferry binary the lab's commands run as
// separate processes (bench and chaos start its services, kill them and
// start them again): the lab binary itself holds no service commands.
package shipped

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binary returns the mailferry binary to run: path when given; else a
// `mailferry` next to the running executable or on PATH; else one built
// from this source tree with `go build` into a new directory under dir.
func Binary(ctx context.Context, path, dir string) (string, error) {
	if path != "" {
		return usable(path)
	}
	if exe, err := os.Executable(); err == nil {
		if p, err := usable(filepath.Join(filepath.Dir(exe), "mailferry")); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("mailferry"); err == nil {
		return usable(p)
	}
	bin, err := os.MkdirTemp(dir, "bin-")
	if err != nil {
		return "", fmt.Errorf("directory for the mailferry binary: %w", err)
	}
	out := filepath.Join(bin, "mailferry")
	build := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/mailferry/mailferry/cmd/mailferry")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("no mailferry binary given, none next to this one or on PATH, and building one failed: %w\n%s", err, msg)
	}
	return out, nil
}

func usable(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("mailferry binary: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", errors.New("mailferry binary " + path + " is not an executable file")
	}
	return filepath.Abs(path)
}

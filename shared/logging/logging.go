// Package logging builds the zerolog logger every mailferry service uses:
// one event per fact, fields not prose.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at level ("debug", "info", ...) in
// format "json" or "console", with the service name as a field.
func New(w io.Writer, level, format, service string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("log level %q: %w", level, err)
	}
	// Services in one process log at once; not every writer takes that.
	w = zerolog.SyncWriter(w)
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	l := zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	if service != "" {
		l = l.With().Str("service", service).Logger()
	}
	return l, nil
}

// Stderr is New on standard error.
func Stderr(level, format, service string) (zerolog.Logger, error) {
	return New(os.Stderr, level, format, service)
}

// IsTerminal reports whether w is a terminal (a character device): live
// progress displays and screen redraws go only there, never into a file or
// a pipe.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

package broker

import "fmt"

// lockFile is the file in nats.data_dir an embedded server holds locked.
const lockFile = ".mailferry.lock"

// DataDirInUseError is Connect's error when another process runs an
// embedded server on the same nats.data_dir.
type DataDirInUseError struct {
	Dir string
	// PID is the holder's process id, as it wrote it ("" if unknown).
	PID string
}

// Error says which directory and process, and what to do.
func (e *DataDirInUseError) Error() string {
	holder := "another process"
	if e.PID != "" {
		holder = "process " + e.PID
	}
	return fmt.Sprintf("nats.data_dir %s is in use by %s (a running migrate or cutover start): stop it first, "+
		"or set nats.listen there and nats.url here to reach its server", e.Dir, holder)
}

//go:build !unix

package broker

import "os"

// lockDataDir takes no lock where flock(2) does not exist.
func lockDataDir(string) (*os.File, error) { return nil, nil }

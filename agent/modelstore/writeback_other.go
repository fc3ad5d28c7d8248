//go:build !linux

package modelstore

import "os"

// startWriteback does nothing outside Linux: the final fsync writes the whole file.
func startWriteback(*os.File, int64, int64) {}

package modelstore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// syncDir fsyncs a directory, making the entries created, renamed or removed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// setLink points modelDir/link at version v, atomically: a new symlink under a temporary name is
// renamed over the old one (rename(2) replaces it in one step), then the directory is synced.
func setLink(modelDir, link string, v int) error {
	tmp := filepath.Join(modelDir, linkTmpPrefix+link+"-"+randomSuffix())
	if err := os.Symlink(strconv.Itoa(v), tmp); err != nil {
		return fmt.Errorf("create %s link: %w", link, err)
	}
	if err := os.Rename(tmp, filepath.Join(modelDir, link)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("switch %s link: %w", link, err)
	}
	return syncDir(modelDir)
}

// removeLink deletes modelDir/link if present and syncs the directory.
func removeLink(modelDir, link string) error {
	if err := os.Remove(filepath.Join(modelDir, link)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s link: %w", link, err)
	}
	return syncDir(modelDir)
}

// readLink returns the version modelDir/link points at, 0 if the link does not exist, or an
// error wrapping ErrBadVersion if it is not a symlink to a version directory name.
func readLink(modelDir, link string) (int, error) {
	target, err := os.Readlink(filepath.Join(modelDir, link))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %s link: %v", ErrBadVersion, link, err)
	}
	v, err := parseVersion(target)
	if err != nil {
		return 0, fmt.Errorf("%s link: %w", link, err)
	}
	return v, nil
}

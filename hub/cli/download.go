package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) modelDownload() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "download NAME VERSION -o FILE",
		Short: "Download a model version's artifact, checking its sha256",
		Long: "download streams the artifact into FILE (\"-\" for stdout), checks the whole file's sha256 against the\n" +
			"digest the hub registered, and only then puts FILE in place.",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("model download needs -o FILE")
			}
			v, err := parseVersion("VERSION", args[1])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.download(a.ctx, fmt.Sprintf("/api/v1/models/%s/versions/%d/artifact", seg(args[0]), v), "")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			want := res.Header.Get("X-Driftline-Digest")
			if out == "-" {
				got, _, err := copyHashed(a.stdout, res.Body, nil)
				if err != nil {
					return err
				}
				return checkDigest(want, got)
			}
			return a.downloadTo(out, res, want)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (\"-\" for stdout)")
	return cmd
}

// downloadTo writes the body to a temporary file beside path and renames it into place only when
// the digest matches, so path never holds a partial or wrong artifact.
func (a *app) downloadTo(path string, res *http.Response, want string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return usagef("-o %s: %v", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	prog := newProgress(a.stderr, "download "+filepath.Base(path), res.ContentLength)
	got, n, err := copyHashed(tmp, res.Body, prog)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = usagef("write %s: %v", tmp.Name(), cerr)
	}
	if err != nil {
		return err
	}
	prog.done()
	if res.ContentLength >= 0 && n != res.ContentLength {
		return fmt.Errorf("%w: download cut short: %d of %d bytes", ErrUnavailable, n, res.ContentLength)
	}
	if err := checkDigest(want, got); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return usagef("-o %s: %v", path, err)
	}
	if !a.jsonOut() {
		fmt.Fprintf(a.stdout, "wrote %s (%d bytes, %s)\n", path, n, got)
	}
	return nil
}

// copyHashed copies src to dst and returns "sha256:HEX" of what was copied. A read error is the
// hub's (the connection was cut), a write error is local.
func copyHashed(dst io.Writer, src io.Reader, prog *progress) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), prog.reader(&readErrMarker{r: src}))
	if err != nil {
		if re, ok := err.(readErr); ok {
			return "", n, fmt.Errorf("%w: download: %w", ErrUnavailable, re.error)
		}
		return "", n, usagef("write: %v", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// readErr marks an error that came from the response body rather than the destination.
type readErr struct{ error }

type readErrMarker struct{ r io.Reader }

func (m *readErrMarker) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}

// checkDigest compares the downloaded file's digest with the one the hub announced.
func checkDigest(want, got string) error {
	if want != "" && want != got {
		return fmt.Errorf("%w: downloaded artifact has digest %s, the hub registered %s", ErrUnavailable, got, want)
	}
	return nil
}

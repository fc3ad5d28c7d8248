package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
)

// formPart is one part of a multipart upload: small in-memory data, or a file streamed from disk.
type formPart struct {
	name        string
	contentType string
	data        []byte
	// file is the path of a file to stream; the part then carries its base name as filename.
	file string
}

// upload POSTs parts as multipart/form-data, streaming file parts through an io.Pipe so no file
// is ever held in memory, and draws upload progress on stderr when it is a terminal.
func (c *client) upload(ctx context.Context, path string, parts []formPart, stderr io.Writer, out any) ([]byte, error) {
	return c.uploadMethod(ctx, http.MethodPost, path, parts, stderr, out)
}

// uploadMethod is upload with another method (PUT).
func (c *client) uploadMethod(ctx context.Context, method, path string, parts []formPart, stderr io.Writer, out any) ([]byte, error) {
	files := make([]*os.File, len(parts))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	var total int64
	var label string
	for i, p := range parts {
		if p.file == "" {
			total += int64(len(p.data))
			continue
		}
		f, err := os.Open(p.file)
		if err != nil {
			return nil, usagef("--%s: %v", p.name, err)
		}
		files[i] = f
		st, err := f.Stat()
		if err != nil {
			return nil, usagef("--%s: %v", p.name, err)
		}
		if st.IsDir() {
			return nil, usagef("--%s %s is a directory", p.name, p.file)
		}
		total += st.Size()
		label = "upload " + filepath.Base(p.file)
	}
	prog := newProgress(stderr, label, total)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	written := make(chan error, 1)
	go func() {
		err := writeParts(mw, parts, files, prog)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
		written <- err
	}()
	req, err := c.request(ctx, method, path, nil, pr, mw.FormDataContentType())
	if err != nil {
		pr.Close()
		<-written
		return nil, err
	}
	res, err := c.send(req)
	pr.Close() // unblocks the writer if the hub answered before reading everything
	werr := <-written
	prog.done()
	if err != nil {
		if werr != nil && !isPipeClosed(werr) {
			return nil, usagef("read upload: %v", werr)
		}
		return nil, err
	}
	if werr != nil && !isPipeClosed(werr) && res.StatusCode < 300 {
		res.Body.Close()
		return nil, usagef("read upload: %v", werr)
	}
	return readAnswer(res, out)
}

func isPipeClosed(err error) bool {
	return err == io.ErrClosedPipe || strings.Contains(err.Error(), "closed pipe")
}

func writeParts(mw *multipart.Writer, parts []formPart, files []*os.File, prog *progress) error {
	for i, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.file != "" {
			disp += fmt.Sprintf(`; filename=%q`, filepath.Base(p.file))
		}
		h.Set("Content-Disposition", disp)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		var src io.Reader
		if files[i] != nil {
			src = files[i]
		} else {
			src = bytes.NewReader(p.data)
		}
		if _, err := io.Copy(w, prog.reader(src)); err != nil {
			return err
		}
	}
	return nil
}

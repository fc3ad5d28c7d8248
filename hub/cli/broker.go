package cli

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

func (a *app) brokerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "broker", Short: "External broker helpers (Mosquitto ACL and password file)"}
	cmd.AddCommand(a.brokerACL())
	return cmd
}

// brokerACL renders the embedded broker's access rules for Mosquitto, with each device's read
// right on the shared chunk topics of the models its desired state names now (render again
// after a rollout's wave starts, as after enrolling devices). The hub keeps only hashes
// of device tokens, so password entries come from a credentials file the operator kept when
// enrolling devices ("user:password" per line; `device add` prints each token once).
func (a *app) brokerACL() *cobra.Command {
	var (
		hubUser, prefix, aclOut, passwdOut, credsFile string
		viewers                                       []string
	)
	cmd := &cobra.Command{
		Use:   "acl [--acl-out FILE] [--credentials FILE --passwd-out FILE]",
		Short: "Print the Mosquitto ACL (and password entries) for the enrolled fleet",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			items, err := c.listAll(a.ctx, "/api/v1/devices", nil)
			if err != nil {
				return err
			}
			devs, err := decodeItems[state.Device](items)
			if err != nil {
				return err
			}
			ids := make([]string, 0, len(devs))
			models := map[string][]string{} // device -> the models its desired state names
			for _, d := range devs {
				ids = append(ids, d.ID)
				for name := range d.Desired {
					models[d.ID] = append(models[d.ID], name)
				}
				sort.Strings(models[d.ID])
			}
			sort.Strings(ids)
			if prefix == "" {
				// The ACL must match the topics the hub and its agents use: the hub's prefix.
				_, hp, err := advertised(a.ctx, c)
				if err != nil {
					return err
				}
				prefix = cmp.Or(hp, wire.DefaultPrefix)
			}
			var acl bytes.Buffer
			if err := broker.WriteMosquittoACLModels(&acl, prefix, ids, models, viewers, hubUser); err != nil {
				return usagef("%v", err)
			}
			if err := writeOut(a.stdout, aclOut, acl.Bytes(), 0o644); err != nil {
				return err
			}
			if credsFile == "" {
				if passwdOut != "" {
					return usagef("--passwd-out needs --credentials FILE (user:password lines)")
				}
				return nil
			}
			creds, err := readCreds(credsFile)
			if err != nil {
				return usagef("%v", err)
			}
			var pw bytes.Buffer
			if err := broker.WriteMosquittoPasswd(&pw, creds); err != nil {
				return usagef("%v", err)
			}
			return writeOut(a.stdout, passwdOut, pw.Bytes(), 0o600)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hubUser, "hub-user", "driftline-hub", "the broker user the hub connects as (may do everything)")
	f.StringArrayVar(&viewers, "viewer", nil, "a read-only user (e.g. grafana); repeatable")
	f.StringVar(&prefix, "prefix", "", "topic prefix (default: the hub's, from GET /api/v1/cluster; "+wire.DefaultPrefix+" if it does not say)")
	f.StringVar(&aclOut, "acl-out", "", "write the ACL here instead of stdout")
	f.StringVar(&credsFile, "credentials", "", "user:password lines to hash into a Mosquitto password file")
	f.StringVar(&passwdOut, "passwd-out", "", "write the password file here (mode 0600) instead of stdout")
	return cmd
}

// writeOut writes b to stdout when path is empty, else replaces the file at path atomically
// with mode. A file it replaces keeps its owner and group: Mosquitto drops to its own user before
// it reads password_file and acl_file, so a re-rendered file handed to that user once must stay
// readable by it after the next SIGHUP. When the owner cannot be kept (not root), it says so
// instead of leaving Mosquitto a file it cannot open.
func writeOut(stdout io.Writer, path string, b []byte, mode os.FileMode) error {
	if path == "" {
		_, err := stdout.Write(b)
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil { // WriteFile leaves an existing tmp's mode
		os.Remove(tmp)
		return err
	}
	if st, err := os.Stat(path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && (int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid()) {
			if err := os.Chown(tmp, int(sys.Uid), int(sys.Gid)); err != nil {
				os.Remove(tmp)
				return fmt.Errorf("keep the owner (uid %d, gid %d) of %s, which the broker reads: %w (render it as root or as that user)", sys.Uid, sys.Gid, path, err)
			}
		}
	}
	return os.Rename(tmp, path)
}

func readCreds(path string) ([]broker.Cred, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []broker.Cred
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("%s:%d: want user:password", path, n)
		}
		out = append(out, broker.Cred{User: user, Password: pass})
	}
	return out, sc.Err()
}

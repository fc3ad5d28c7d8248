package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
)

// keyRow is one key of GET /api/v1/keys as the CLI prints it.
type keyRow struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
	Status    string `json:"status"`
	Signer    bool   `json:"signer"`
	AddedAt   int64  `json:"added_at"`
	RetiredAt int64  `json:"retired_at"`
}

// keyPage is the answer of the key endpoints.
type keyPage struct {
	Items       []keyRow `json:"items"`
	RootVersion int64    `json:"root_version"`
}

func (a *app) keyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "List, rotate and retire the cluster's online signing keys"}
	cmd.AddCommand(a.keyList(), a.keyRotate(), a.keyRetire(), a.keyRotateRoot())
	return cmd
}

func (a *app) keyList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the online signing keys and the root of trust's version", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.keyCall(http.MethodGet, "/api/v1/keys", nil, "")
		},
	}
}

func (a *app) keyRotate() *cobra.Command {
	var rootKey string
	cmd := &cobra.Command{
		Use:   "rotate [--root-key FILE]",
		Short: "Add a fresh online key, certify it in the next root version and sign with it",
		Long: "Without --root-key the leader signs the new root version with the root key it holds. With --root-key the\n" +
			"new online key and the new root version are made here, with the root key kept offline, and sent to the hub.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if rootKey != "" {
				b, err := a.offlineRoot(rootKey, func(active []ed25519.PublicKey) ([]ed25519.PublicKey, ed25519.PrivateKey, error) {
					_, next, err := ed25519.GenerateKey(rand.Reader)
					if err != nil {
						return nil, nil, err
					}
					return append(active, next.Public().(ed25519.PublicKey)), next, nil
				})
				if err != nil {
					return err
				}
				body = b
			}
			return a.keyCall(http.MethodPost, "/api/v1/keys/rotate", body, "rotated: root version %d, signing with %s\n")
		},
	}
	cmd.Flags().StringVar(&rootKey, "root-key", "", "sign the new root version here with this root key file (kept offline)")
	return cmd
}

func (a *app) keyRetire() *cobra.Command {
	var rootKey string
	cmd := &cobra.Command{
		Use:   "retire KEY_ID [--root-key FILE]",
		Short: "Drop a key from the next root version: agents refuse its signatures once they learn it",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if rootKey != "" {
				b, err := a.offlineRoot(rootKey, func(active []ed25519.PublicKey) ([]ed25519.PublicKey, ed25519.PrivateKey, error) {
					var keep []ed25519.PublicKey
					for _, p := range active {
						if artifact.KeyID(p) != args[0] {
							keep = append(keep, p)
						}
					}
					if len(keep) == len(active) {
						return nil, nil, usagef("%s is not an active key (driftline key list)", args[0])
					}
					return keep, nil, nil
				})
				if err != nil {
					return err
				}
				body = b
			}
			return a.keyCall(http.MethodPost, "/api/v1/keys/"+seg(args[0])+"/retire", body, "retired "+args[0]+": root version %d, signing with %s\n")
		},
	}
	cmd.Flags().StringVar(&rootKey, "root-key", "", "sign the new root version here with this root key file (kept offline)")
	return cmd
}

func (a *app) keyRotateRoot() *cobra.Command {
	var oldPath, newPath string
	cmd := &cobra.Command{
		Use:   "rotate-root --root-key OLD --new-root-key NEW",
		Short: "Replace the root key: the next root version is signed by the old and the new root key",
		Long: "Makes root version N+1 with NEW as the root role's key and the same online keys, signed by OLD (so agents\n" +
			"holding version N accept it) and by NEW (TUF's rule), here, and sends it to the hub. NEW is generated (mode\n" +
			"0600) when the file does not exist. From then on only NEW signs root versions (key rotate/retire --root-key NEW).",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if oldPath == "" || newPath == "" {
				return usagef("--root-key OLD and --new-root-key NEW are both required")
			}
			oldKey, err := artifact.LoadKey(oldPath)
			if err != nil {
				return usagef("--root-key %s: %v", oldPath, err)
			}
			newKey, err := artifact.LoadOrGenerateKey(newPath)
			if err != nil {
				return usagef("--new-root-key %s: %v", newPath, err)
			}
			if newKey.Equal(oldKey) {
				return usagef("--new-root-key is the same key as --root-key")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var latest json.RawMessage
			if _, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/keys/root", nil, nil, &latest); err != nil {
				return err
			}
			root, err := trust.NextRootKey(latest, oldKey, newKey, time.Now().Add(keys.RootLifetime))
			if errors.Is(err, trust.ErrBadRoot) || errors.Is(err, trust.ErrChain) {
				return usagef("--root-key %s is not this cluster's root key: %v", oldPath, err)
			}
			if err != nil {
				return err
			}
			return a.keyCall(http.MethodPost, "/api/v1/keys/root", api.SignedRootRequest{Root: root},
				"root key rotated: root version %d (online signer %s); keep "+strings.ReplaceAll(newPath, "%", "%%")+" offline, and delete the old root key\n")
		},
	}
	cmd.Flags().StringVar(&oldPath, "root-key", "", "the current root key file")
	cmd.Flags().StringVar(&newPath, "new-root-key", "", "the new root key file (generated when missing)")
	return cmd
}

// offlineRoot signs the root version after the hub's newest with the root key in path: its
// online keys are what change returns from the active ones (and the new private key, if any).
func (a *app) offlineRoot(path string, change func([]ed25519.PublicKey) ([]ed25519.PublicKey, ed25519.PrivateKey, error)) (api.SignedRootRequest, error) {
	var req api.SignedRootRequest
	rootKey, err := artifact.LoadKey(path)
	if err != nil {
		return req, usagef("--root-key %s: %v", path, err)
	}
	c, err := a.client()
	if err != nil {
		return req, err
	}
	var latest json.RawMessage
	if _, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/keys/root", nil, nil, &latest); err != nil {
		return req, err
	}
	var page keyPage
	if _, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/keys", nil, nil, &page); err != nil {
		return req, err
	}
	var active []ed25519.PublicKey
	for _, k := range page.Items {
		if k.Status == "active" {
			p, err := artifact.ParsePublicKey([]byte(k.PublicKey))
			if err != nil {
				return req, err
			}
			active = append(active, p)
		}
	}
	online, next, err := change(active)
	if err != nil {
		return req, err
	}
	root, err := trust.Next(latest, rootKey, online, time.Now().Add(keys.RootLifetime))
	if errors.Is(err, trust.ErrBadRoot) {
		return req, usagef("--root-key %s is not this cluster's root key: %v", path, err)
	}
	if err != nil {
		return req, err
	}
	req.Root = root
	if next != nil {
		req.PrivateKey = base64.StdEncoding.EncodeToString(next)
	}
	return req, nil
}

// keyCall sends one key request (body may be nil) and prints the keys (after msg, when set,
// which takes the root version and the signer's id).
func (a *app) keyCall(method, path string, body any, msg string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	var page keyPage
	raw, err := c.JSON(a.ctx, method, path, nil, body, &page)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		return printRaw(a.stdout, json.RawMessage(raw))
	}
	if msg != "" {
		signer := "-"
		for _, k := range page.Items {
			if k.Signer {
				signer = k.KeyID
			}
		}
		fmt.Fprintf(a.stdout, msg, page.RootVersion, signer)
	} else {
		fmt.Fprintf(a.stdout, "root of trust: version %d\n", page.RootVersion)
	}
	t := newTable(a.stdout, "KEY", "STATUS", "SIGNER", "ADDED", "RETIRED")
	for _, k := range page.Items {
		signer := ""
		if k.Signer {
			signer = "yes"
		}
		t.row(k.KeyID, k.Status, signer, when(k.AddedAt), when(k.RetiredAt))
	}
	return t.flush()
}

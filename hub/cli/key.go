package cli

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
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
	cmd.AddCommand(a.keyList(), a.keyRotate(), a.keyRetire())
	return cmd
}

func (a *app) keyList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the online signing keys and the root of trust's version", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.keyCall(http.MethodGet, "/api/v1/keys", "")
		},
	}
}

func (a *app) keyRotate() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Add a fresh online key, certify it in the next root version and sign with it (needs the root key on the leader)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.keyCall(http.MethodPost, "/api/v1/keys/rotate", "rotated: root version %d, signing with %s\n")
		},
	}
}

func (a *app) keyRetire() *cobra.Command {
	return &cobra.Command{
		Use:   "retire KEY_ID",
		Short: "Drop a key from the next root version: agents refuse its signatures once they learn it",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.keyCall(http.MethodPost, "/api/v1/keys/"+seg(args[0])+"/retire", "retired "+args[0]+": root version %d, signing with %s\n")
		},
	}
}

// keyCall sends one key request and prints the keys (after msg, when set, which takes the root
// version and the signer's id).
func (a *app) keyCall(method, path, msg string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	var page keyPage
	raw, err := c.JSON(a.ctx, method, path, nil, nil, &page)
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

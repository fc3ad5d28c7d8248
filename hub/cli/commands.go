package cli

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
)

// createCmd is `KIND create NAME [--description D]`: it posts the name and description to path
// and prints the object created (raw with --json).
func (a *app) createCmd(kind, path, descHelp string) *cobra.Command {
	var desc string
	cmd := &cobra.Command{
		Use: "create NAME", Short: "Create a " + kind, Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var created struct {
				Name string `json:"name"`
			}
			raw, err := c.JSON(a.ctx, http.MethodPost, path, nil, api.CreateRequest{Name: args[0], Description: desc}, &created)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "created %s %s\n", kind, created.Name)
			return err
		},
	}
	cmd.Flags().StringVar(&desc, "description", "", descHelp)
	return cmd
}

// listTable is the body of a `KIND list` command: every page of path, printed raw with
// --json, else as a table with header and one row per item.
func listTable[T any](a *app, path string, q url.Values, header []string, row func(T) []string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	items, err := c.listAll(a.ctx, path, q)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		return printList(a.stdout, items)
	}
	vs, err := decodeItems[T](items)
	if err != nil {
		return err
	}
	t := newTable(a.stdout, header...)
	for _, v := range vs {
		t.row(row(v)...)
	}
	return t.flush()
}

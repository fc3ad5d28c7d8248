package cli

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	cmd.AddCommand(a.tokenCreate(), a.tokenList(), a.tokenRevoke())
	return cmd
}

func (a *app) tokenCreate() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use: "create NAME --role admin|publisher|approver|viewer", Short: "Create an API token (shown once)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usagef("token create needs --role (admin, publisher, approver or viewer)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var t api.TokenCreated
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/tokens", nil, api.TokenRequest{Name: args[0], Role: role}, &t)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "created token %s (%s, role %s)\ntoken: %s\n(shown once: keep it now)\n", t.ID, t.Name, t.Role, t.Token)
			return err
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, publisher, approver or viewer")
	return cmd
}

func (a *app) tokenList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List API tokens (never the secrets)", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listTable(a, "/api/v1/tokens", nil, []string{"ID", "NAME", "ROLE", "CREATED", "BY", "EXPIRES"},
				func(tk state.Token) []string {
					return []string{tk.ID, tk.Name, tk.Role, when(tk.CreatedAt), dash(tk.CreatedBy), when(tk.ExpiresAt)}
				})
		},
	}
}

func (a *app) tokenRevoke() *cobra.Command {
	return &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API token", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.JSON(a.ctx, http.MethodDelete, "/api/v1/tokens/"+seg(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "revoked token %s\n", args[0])
			return err
		},
	}
}

package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/enrol"
	"github.com/driftline/driftline/shared/wire"
)

func (a *app) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Manage the device fleet"}
	cmd.AddCommand(a.deviceAdd(), a.deviceList(), a.deviceShow(), a.deviceLabel(), a.deviceRemove(), a.devicePin(), a.deviceRotateToken())
	return cmd
}

func (a *app) deviceAdd() *cobra.Command {
	var lbls []string
	var agentConfig, broker string
	cmd := &cobra.Command{
		Use:   "add ID [--label k=v]... [--agent-config FILE]",
		Short: "Register a device; print its token once, or write a ready agent config",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseLabels("--label", lbls)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var d api.DeviceCreated
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/devices", nil, api.DeviceRequest{ID: args[0], Labels: lm}, &d)
			if err != nil {
				return err
			}
			return a.newToken(c, raw, d, "added device", agentConfig, broker)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&lbls, "label", nil, "label KEY=VALUE; repeatable")
	f.StringVar(&agentConfig, "agent-config", "", "write a ready agent config (YAML) to this file")
	f.StringVar(&broker, "broker", "", "broker URL(s), comma-separated, for the agent config when the hub advertises none (default "+DefaultBroker+")")
	return cmd
}

func (a *app) deviceRotateToken() *cobra.Command {
	var agentConfig, broker string
	cmd := &cobra.Command{
		Use:   "rotate-token ID [--agent-config FILE]",
		Short: "Give a device a new token (printed once); the old one stops working and its connections are closed",
		Long: "rotate-token replaces the device's token. The device keeps its labels, desired state and revision\n" +
			"history, so its agent accepts the next desired state as soon as it runs with the new token.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var d api.DeviceCreated
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(args[0])+"/token", nil, struct{}{}, &d)
			if err != nil {
				return err
			}
			return a.newToken(c, raw, d, "rotated the token of device", agentConfig, broker)
		},
	}
	f := cmd.Flags()
	f.StringVar(&agentConfig, "agent-config", "", "write a ready agent config (YAML) with the new token to this file")
	f.StringVar(&broker, "broker", "", "broker URL(s), comma-separated, for the agent config when the hub advertises none (default "+DefaultBroker+")")
	return cmd
}

// newToken finishes a command that gave device d a new token (add, rotate-token): it writes the
// agent config to agentConfig when that is set, then prints the hub's answer raw (--json), or
// "DONE ID" and where the token went (the config file, or printed once).
func (a *app) newToken(c *client, raw []byte, d api.DeviceCreated, done, agentConfig, broker string) error {
	if agentConfig != "" {
		if err := a.agentConfig(c, agentConfig, broker, d); err != nil {
			return err
		}
	}
	if a.jsonOut() {
		return printRaw(a.stdout, raw)
	}
	fmt.Fprintf(a.stdout, "%s %s\n", done, d.ID)
	if agentConfig != "" {
		_, err := fmt.Fprintf(a.stdout, "agent config written to %s (it holds the token)\n", agentConfig)
		return err
	}
	_, err := fmt.Fprintf(a.stdout, "token: %s\n(shown once: keep it now)\n", d.Token)
	return err
}

// agentConfig writes the agent config of a just-created device. The device exists already: a
// failure here says so, with the token, so that it is not lost.
func (a *app) agentConfig(c *client, path, broker string, d api.DeviceCreated) error {
	fail := func(err error) error {
		fmt.Fprintf(a.stderr, "device %s has a new token, but its agent config could not be written; its token is %s\n", d.ID, d.Token)
		return err
	}
	brokers, prefix, err := advertised(a.ctx, c)
	if err != nil {
		return fail(err)
	}
	if broker != "" {
		brokers = splitURLs(broker)
	}
	if len(brokers) == 0 {
		brokers = []string{DefaultBroker}
	}
	root, err := trustedRoot(a.ctx, c)
	if err != nil {
		return fail(err)
	}
	cfg := enrol.Config{DeviceID: d.ID, Token: d.Token, Brokers: brokers, TrustedRoot: root, Hub: c.base}
	if prefix != wire.DefaultPrefix {
		cfg.TopicPrefix = prefix
	}
	if err := enrol.Write(path, cfg); err != nil {
		return fail(usagef("--agent-config %s: %v", path, err))
	}
	return nil
}

func (a *app) deviceList() *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use: "list [--selector k=v,k2=v2]", Short: "List devices, optionally those whose labels match a selector", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if selector != "" {
				q.Set("selector", selector)
			}
			return listTable(a, "/api/v1/devices", q, []string{"ID", "ONLINE", "LAST SEEN", "MODELS", "LABELS"},
				func(d state.Device) []string {
					return []string{d.ID, strconv.FormatBool(d.Online), when(d.LastSeen), activeModels(d), labels(d.Labels)}
				})
		},
	}
	cmd.Flags().StringVar(&selector, "selector", "", "label selector, e.g. site=berlin,tier=edge")
	return cmd
}

// activeModels renders what a device reports running: "NAME@V" per model, sorted.
func activeModels(d state.Device) string {
	var parts []string
	for name, m := range d.Reported.Models {
		v := "-"
		if m.Active != nil {
			v = strconv.Itoa(*m.Active)
		}
		parts = append(parts, name+"@"+v)
	}
	sort.Strings(parts)
	return dash(strings.Join(parts, ","))
}

func (a *app) deviceShow() *cobra.Command {
	return &cobra.Command{
		Use: "show ID", Short: "Show one device: labels, desired and reported models, health", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var d state.Device
			raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/devices/"+seg(args[0]), nil, nil, &d)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			if err := fields(a.stdout, "id", d.ID, "online", strconv.FormatBool(d.Online), "labels", labels(d.Labels),
				"first seen", when(d.FirstSeen), "last seen", when(d.LastSeen), "agent", dash(d.Reported.AgentVersion)); err != nil {
				return err
			}
			if d.Health != nil {
				h := d.Health
				fmt.Fprintf(a.stdout, "health:      %s@%d rows=%d invalid=%d dataset_drift=%t drift_share=%.2f at %s\n",
					h.Model, h.Version, h.Rows, h.Invalid, h.DatasetDrift, h.DriftShare, when(h.At))
			}
			fmt.Fprintln(a.stdout)
			names := map[string]bool{}
			for n := range d.Desired {
				names[n] = true
			}
			for n := range d.Reported.Models {
				names[n] = true
			}
			sorted := make([]string, 0, len(names))
			for n := range names {
				sorted = append(sorted, n)
			}
			sort.Strings(sorted)
			t := newTable(a.stdout, "MODEL", "DESIRED", "ACTIVE", "STATE", "ROLLOUT", "LAST ERROR")
			for _, n := range sorted {
				desired, rollout := "-", "-"
				if dm, ok := d.Desired[n]; ok {
					desired, rollout = strconv.Itoa(dm.Version), dash(dm.RolloutID)
				}
				rm := d.Reported.Models[n]
				active := "-"
				if rm.Active != nil {
					active = strconv.Itoa(*rm.Active)
				}
				t.row(n, desired, active, dash(rm.State), rollout, dash(rm.LastError))
			}
			return t.flush()
		},
	}
}

func (a *app) deviceLabel() *cobra.Command {
	return &cobra.Command{
		Use:   "label ID k=v... k2-...",
		Short: "Set labels (k=v) and remove them (k-) on a device",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			patch, err := parseEdits("label", args[1:])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var d state.Device
			raw, err := c.JSON(a.ctx, http.MethodPatch, "/api/v1/devices/"+seg(args[0]), nil, api.PatchRequest{Labels: patch}, &d)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "%s labels: %s\n", args[0], labels(d.Labels))
			return err
		},
	}
}

func (a *app) deviceRemove() *cobra.Command {
	return &cobra.Command{
		Use: "remove ID", Short: "Remove a device (its token stops working)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.JSON(a.ctx, http.MethodDelete, "/api/v1/devices/"+seg(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "removed device %s\n", args[0])
			return err
		},
	}
}

func (a *app) devicePin() *cobra.Command {
	return &cobra.Command{
		Use: "pin ID MODEL VERSION", Short: "Set the model version one device should run (0 clears)", Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[2])
			if err != nil || v < 0 {
				return usagef("VERSION %q: want an integer >= 0 (0 clears the pin)", args[2])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.JSON(a.ctx, http.MethodPut, "/api/v1/devices/"+seg(args[0])+"/models/"+seg(args[1]), nil, api.VersionRequest{Version: &v}, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "device %s should run %s@%d\n", args[0], args[1], v)
			return err
		},
	}
}

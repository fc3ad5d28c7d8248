package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

// eventAliases are the short names `webhook add --event` takes beside the full types.
var eventAliases = map[string][]string{
	"drift":     {state.EventDriftDetected, state.EventDriftCleared},
	"gate":      {state.EventGateDecision},
	"dataset":   {state.EventDatasetVersion, state.EventDatasetCandidate},
	"candidate": {state.EventDatasetCandidate},
}

func (a *app) webhookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use: "webhook", Short: "Send drift, gate and dataset events to HTTP receivers (signed CloudEvents)",
		Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.webhookAdd(), a.webhookList(), a.webhookRemove(), a.webhookTest(), a.webhookDeliveries())
	return cmd
}

// expandEvents turns --event values (aliases, full types, comma lists) into event types.
func expandEvents(in []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range in {
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			types, ok := eventAliases[e]
			if !ok {
				if !state.ValidEventType(e) {
					return nil, usagef("--event %q: use drift, gate, dataset, candidate or one of %s", e, strings.Join(state.EventTypes, ", "))
				}
				types = []string{e}
			}
			for _, t := range types {
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
		}
	}
	return out, nil
}

func (a *app) webhookAdd() *cobra.Command {
	var id, secret, desc string
	var events []string
	cmd := &cobra.Command{
		Use: "add URL [--event drift|gate|dataset|candidate|TYPE]... [--id ID] [--secret S]", Short: "Register a webhook (its secret is shown once)",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			evs, err := expandEvents(events)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var w api.WebhookCreated
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/webhooks", nil,
				api.WebhookRequest{ID: id, URL: args[0], Events: evs, Secret: secret, Description: desc}, &w)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "created webhook %s -> %s (events: %s)\nsecret: %s\n(shown once: the receiver checks the Driftline-Signature header with it)\n",
				w.ID, w.URL, eventsText(w.Events), w.Secret)
			return err
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "webhook id (default: random)")
	cmd.Flags().StringVar(&secret, "secret", "", "signing secret, at least 16 characters (default: random)")
	cmd.Flags().StringVar(&desc, "description", "", "what the webhook is for")
	cmd.Flags().StringArrayVar(&events, "event", nil, "event to deliver (repeatable; default: all)")
	return cmd
}

func eventsText(evs []string) string {
	if len(evs) == 0 {
		return "all"
	}
	return strings.Join(evs, ",")
}

func (a *app) webhookList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List webhooks (never the secrets)", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listTable(a, "/api/v1/webhooks", nil, []string{"ID", "URL", "EVENTS", "PENDING", "DELIVERED", "FAILED"},
				func(w state.Webhook) []string {
					return []string{w.ID, w.URL, eventsText(w.Events), strconv.Itoa(w.Pending),
						strconv.FormatInt(w.Delivered, 10), strconv.FormatInt(w.Failed, 10)}
				})
		},
	}
}

func (a *app) webhookRemove() *cobra.Command {
	return &cobra.Command{
		Use: "remove ID", Short: "Remove a webhook with its pending deliveries", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.JSON(a.ctx, http.MethodDelete, "/api/v1/webhooks/"+seg(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "removed webhook %s\n", args[0])
			return err
		},
	}
}

func (a *app) webhookTest() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use: "test ID [--wait 30s]", Short: "Send a test event and wait for its first delivery attempt", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var q api.WebhookTestQueued
			if _, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/webhooks/"+seg(args[0])+"/test", nil, nil, &q); err != nil {
				return err
			}
			deadline := time.Now().Add(wait)
			for {
				var p state.Page[state.WebhookLogEntry]
				_, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/webhooks/"+seg(args[0])+"/deliveries", url.Values{"limit": {"50"}}, nil, &p)
				if err != nil {
					return err
				}
				for _, e := range p.Items {
					if e.EventID != q.EventID {
						continue
					}
					if a.jsonOut() {
						b, err := json.Marshal(e)
						if err != nil {
							return err
						}
						if err := printRaw(a.stdout, b); err != nil || e.Outcome == state.OutcomeDelivered {
							return err
						}
						return fmt.Errorf("test event %s: attempt %d %s", e.EventID, e.Attempt, e.Outcome)
					}
					if e.Outcome == state.OutcomeDelivered {
						_, err := fmt.Fprintf(a.stdout, "delivered test event %s to %s: HTTP %d in %d ms\n", e.EventID, args[0], e.Status, e.DurationMS)
						return err
					}
					return fmt.Errorf("test event %s: attempt %d %s: %s", e.EventID, e.Attempt, e.Outcome, dash(e.Error))
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("test event %s queued, no attempt recorded within %s (is the hub's leader up?)", q.EventID, wait)
				}
				select {
				case <-a.ctx.Done():
					return a.ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the first attempt")
	return cmd
}

func (a *app) webhookDeliveries() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use: "deliveries ID", Short: "Show a webhook's delivery log, newest first", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var p state.Page[state.WebhookLogEntry]
			raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/webhooks/"+seg(args[0])+"/deliveries", url.Values{"limit": {strconv.Itoa(limit)}}, nil, &p)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			t := newTable(a.stdout, "WHEN", "EVENT", "TYPE", "ATTEMPT", "OUTCOME", "STATUS", "MS", "ERROR")
			for _, e := range p.Items {
				status := "-"
				if e.Status != 0 {
					status = strconv.Itoa(e.Status)
				}
				t.row(when(e.At), e.EventID, e.EventType, strconv.Itoa(e.Attempt), e.Outcome, status, strconv.FormatInt(e.DurationMS, 10), dash(e.Error))
			}
			return t.flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "entries to show (1-1000)")
	return cmd
}

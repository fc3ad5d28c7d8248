package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/store"
)

// hubOpsCmds are the operator's `hub` subcommands besides serve.
func (a *app) hubOpsCmds() []*cobra.Command {
	return []*cobra.Command{a.hubBackup(), a.hubRestore(), a.hubStatus()}
}

// backupResult is what `hub backup` and `hub restore` print with -o json.
type backupResult struct {
	File    string    `json:"file"`
	Node    string    `json:"node"`
	Index   uint64    `json:"index"`
	Term    uint64    `json:"term"`
	Created time.Time `json:"created"`
	Records int       `json:"records"`
	Bytes   int64     `json:"bytes"`
	DataDir string    `json:"data_dir,omitempty"`
	NodeID  string    `json:"node_id,omitempty"`
	Raft    string    `json:"raft,omitempty"`
}

func (a *app) hubBackup() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Save an online backup of the cluster (taken on the leader, any node forwards) to FILE",
		Long: "backup streams a consistent copy of the replicated state from the running cluster at --hub (registry,\n" +
			"artifacts, lineage, devices, tokens, signing public keys, audit chain) into FILE, while the cluster goes on\n" +
			"serving. The file is checked (header, record count, SHA-256) before it takes its name; until then it is\n" +
			"FILE.partial. Needs an admin token. `driftline hub restore` seeds a new node from it.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			if file == "" || file == "-" {
				return usagef("backup needs a file name (stdout is not supported: the file is checked before it is kept)")
			}
			if _, err := os.Stat(file); err == nil && !force {
				return usagef("%s exists; pass --force to replace it", file)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.download(a.ctx, "/api/v1/cluster/backup", "application/octet-stream, application/problem+json")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			est, _ := strconv.ParseInt(res.Header.Get(api.HeaderBackupEstimate), 10, 64)
			tmp := file + ".partial"
			f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
			if err != nil {
				return usagef("create %s: %v", tmp, err)
			}
			keep := false
			defer func() {
				if !keep {
					f.Close()
					os.Remove(tmp)
				}
			}()
			prog := newProgress(a.stderr, "backup", est)
			_, err = io.Copy(f, prog.reader(res.Body))
			prog.done()
			if err != nil {
				return fmt.Errorf("%w: backup stream cut after some bytes: %w", ErrUnavailable, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("write %s: %w", tmp, err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			info, err := store.ReadBackup(f, nil, nil)
			if err != nil {
				return fmt.Errorf("%w: the hub sent a bad backup (%w); nothing was kept", ErrUnavailable, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp, file); err != nil {
				return fmt.Errorf("keep %s: %w", file, err)
			}
			keep = true
			r := backupResult{File: file, Node: info.Node, Index: info.Index, Term: info.Term, Created: info.Created,
				Records: info.Records, Bytes: info.Bytes}
			return a.printBackup(r, fmt.Sprintf("backup of %s at index %d: %d records, %s, checked", info.Node, info.Index,
				info.Records, humanize.IBytes(uint64(info.Bytes)))) //nolint:gosec // sizes are positive
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

func (a *app) printBackup(r backupResult, text string) error {
	if a.output != "table" && a.output != "json" {
		return usagef("--output %q: want table or json", a.output)
	}
	if a.jsonOut() {
		b, err := jsonMarshal(r)
		if err != nil {
			return err
		}
		return printRaw(a.stdout, b)
	}
	_, err := fmt.Fprintln(a.stdout, text)
	return err
}

func (a *app) hubRestore() *cobra.Command {
	var data, raftAddr, nodeID string
	cmd := &cobra.Command{
		Use:   "restore FILE --data DIR",
		Short: "Seed a new one-node cluster in DIR from a backup file",
		Long: "restore checks FILE and writes it into the empty data dir DIR as the state of a new one-node cluster.\n" +
			"Start it with `driftline hub serve --data DIR` and the same --raft and --node-id; other nodes then join it with\n" +
			"--join. The restored hub serves the backed-up registry, artifacts, lineage, devices, tokens (the old admin\n" +
			"token works; no new one is made), signing public keys and audit chain. The signing private key is not in the\n" +
			"backup: copy the old DATA/signing.key into DIR to keep signing with it.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return usagef("restore needs --data DIR (a new, empty data dir)")
			}
			if raftAddr == "" {
				return usagef("--raft must not be empty")
			}
			if a.output != "table" && a.output != "json" {
				return usagef("--output %q: want table or json", a.output)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return usagef("open backup: %v", err)
			}
			defer f.Close()
			var total int64
			if st, err := f.Stat(); err == nil {
				total = st.Size()
			}
			if nodeID == "" {
				nodeID = node.DefaultNodeID(raftAddr)
			}
			prog := newProgress(a.stderr, "restore", total)
			var last int64
			info, err := node.Restore(node.RestoreConfig{DataDir: data, NodeID: nodeID, RaftAddr: raftAddr,
				Progress: func(n int64) { prog.add(int(n - last)); last = n }}, f)
			prog.done()
			if errors.Is(err, store.ErrBadBackup) {
				return usagef("%s: %v", args[0], err)
			}
			if err != nil {
				return usagef("%v", err)
			}
			abs, _ := filepath.Abs(data)
			r := backupResult{File: args[0], Node: info.Node, Index: info.Index, Term: info.Term, Created: info.Created,
				Records: info.Records, Bytes: info.Bytes, DataDir: abs, NodeID: nodeID, Raft: raftAddr}
			return a.printBackup(r, fmt.Sprintf("restored the backup of %s (index %d, taken %s, %d records) into %s\n"+
				"start it with: driftline hub serve --data %s --raft %s --node-id %s",
				info.Node, info.Index, info.Created.Format(time.RFC3339), info.Records, abs, data, raftAddr, nodeID))
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the new node's data dir (must not hold a node yet)")
	f.StringVar(&raftAddr, "raft", "127.0.0.1:7000", "the Raft address the node will be served with (as `hub serve --raft`)")
	f.StringVar(&nodeID, "node-id", "", "the node id it will be served with (default: derived from --raft, as `hub serve`)")
	return cmd
}

func (a *app) hubStatus() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the node at --hub: Raft state, term, commit and applied index, last snapshot, disk use",
		Long:  "status asks the node at --hub about itself (not the leader): for scripts use -o json. Needs an admin token.",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var r api.NodeReport
			raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/node", nil, nil, &r)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			leader := "none"
			if r.Leader != nil {
				leader = r.Leader.ID + " (" + r.Leader.HTTP + ")"
			}
			snap := "none"
			if s := r.LastSnapshot; s != nil {
				snap = fmt.Sprintf("index %d, term %d, %s, %s", s.Index, s.Term, s.Time.Format(time.RFC3339),
					humanize.IBytes(uint64(s.Bytes))) //nolint:gosec
			}
			d := r.Disk
			disk := fmt.Sprintf("%s in %s (db %s, raftlog %s, snapshots %s)", humanize.IBytes(uint64(d.TotalBytes)), d.DataDir, //nolint:gosec
				humanize.IBytes(uint64(d.Bytes["db"])), humanize.IBytes(uint64(d.Bytes["raftlog"])), humanize.IBytes(uint64(d.Bytes["raft"]))) //nolint:gosec
			free := "unknown"
			if d.SizeBytes > 0 {
				free = fmt.Sprintf("%s of %s (%.0f%%)", humanize.IBytes(d.FreeBytes), humanize.IBytes(d.SizeBytes),
					100*float64(d.FreeBytes)/float64(d.SizeBytes))
			}
			return fields(a.stdout, "node", r.ID, "state", r.State, "leader", leader,
				"term", strconv.FormatUint(r.Term, 10), "commit index", strconv.FormatUint(r.CommitIndex, 10),
				"applied index", strconv.FormatUint(r.AppliedIndex, 10), "last log index", strconv.FormatUint(r.LastLogIndex, 10),
				"last snapshot", snap, "disk use", disk, "disk free", free)
		},
	}
}

// clusterOpsCmds are the `cluster` subcommands of operations: list and transfer-leadership.
func (a *app) clusterOpsCmds() []*cobra.Command {
	return []*cobra.Command{a.clusterList(), a.clusterTransfer()}
}

func (a *app) clusterList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the cluster's nodes (id, state, voter, addresses)", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var st api.ClusterStatus
			if _, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/cluster", nil, nil, &st); err != nil {
				return err
			}
			if a.jsonOut() {
				b, err := jsonMarshal(st.Nodes)
				if err != nil {
					return err
				}
				return printRaw(a.stdout, b)
			}
			t := newTable(a.stdout, "ID", "STATE", "VOTER", "RAFT", "HTTP")
			for _, n := range st.Nodes {
				t.row(n.ID, dash(n.State), strconv.FormatBool(n.Voter), n.Raft, n.HTTP)
			}
			return t.flush()
		},
	}
}

func (a *app) clusterTransfer() *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leadership [ID]",
		Short: "Hand Raft leadership to node ID (default: the most up-to-date voter)",
		Long:  "transfer-leadership moves leadership off the current leader, e.g. before restarting its host. Needs an admin token.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one node id, got %d: usage: %s", cmd.CommandPath(), len(args), cmd.UseLine())
			}
			if len(args) == 1 && args[0] == "" {
				return usagef("node id must not be empty")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var req api.LeadershipRequest
			if len(args) == 1 {
				req.To = args[0]
			}
			var res api.LeadershipResponse
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/cluster/leadership", nil, req, &res)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "leader is now %s\n", res.Leader)
			return err
		},
	}
}

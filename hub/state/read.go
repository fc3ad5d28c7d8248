package state

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Reader answers queries from the local FSM state. Reads see the latest applied state of this
// node; the API layer makes them linearizable when asked (a barrier on the leader first).
type Reader struct {
	DB *badger.DB
}

// Page is one page of a list.
type Page[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// DefaultLimit and MaxLimit bound list pages.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrBadCursor is returned for a cursor this hub did not make.
var ErrBadCursor = errors.New("invalid cursor")

// list walks keys under prefix in order, starting after cursor, decoding each value as T and
// keeping those keep accepts, until limit items are collected. keep runs in the read
// transaction, so it may complete an item from other keys of the same snapshot.
func list[T any](db *badger.DB, prefix, cursor string, limit int, reverse bool, keep func(*badger.Txn, *T) (bool, error)) (Page[T], error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if limit > MaxLimit {
		limit = MaxLimit
	}
	var start []byte
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !strings.HasPrefix(string(b), prefix) {
			return Page[T]{}, ErrBadCursor
		}
		start = b
	}
	page := Page[T]{Items: []T{}}
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 16, Reverse: reverse}
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := []byte(prefix)
		if reverse {
			seek = append([]byte(prefix), 0xff)
		}
		if start != nil {
			seek = start
		}
		var last []byte
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().Key()
			if start != nil && string(k) == string(start) {
				continue
			}
			if len(page.Items) == limit {
				c := base64.RawURLEncoding.EncodeToString(last)
				page.NextCursor = &c
				return nil
			}
			var v T
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
			}
			if keep != nil {
				ok, err := keep(txn, &v)
				if err != nil {
					return fmt.Errorf("read %s: %w", k, err)
				}
				if !ok {
					continue
				}
			}
			page.Items = append(page.Items, v)
			last = it.Item().KeyCopy(nil)
		}
		return nil
	})
	return page, err
}

func get[T any](db *badger.DB, key []byte, what string) (T, error) {
	var v T
	err := db.View(func(txn *badger.Txn) error { return getJSON(txn, key, &v) })
	if errors.Is(err, ErrNotFound) {
		return v, notFound("%s", what)
	}
	return v, err
}

// Datasets lists datasets by name.
func (r Reader) Datasets(cursor string, limit int) (Page[Dataset], error) {
	return list[Dataset](r.DB, pDataset, cursor, limit, false, nil)
}

// Dataset returns one dataset.
func (r Reader) Dataset(name string) (Dataset, error) {
	return get[Dataset](r.DB, nameKey(pDataset, name), "dataset "+name)
}

// DatasetVersions lists a dataset's versions, oldest first.
func (r Reader) DatasetVersions(name, cursor string, limit int) (Page[DatasetVersion], error) {
	return list[DatasetVersion](r.DB, pDatasetVersion+name+"/", cursor, limit, false, nil)
}

// DatasetVersion returns one dataset version.
func (r Reader) DatasetVersion(name string, v int) (DatasetVersion, error) {
	return get[DatasetVersion](r.DB, versionKey(pDatasetVersion, name, v), DatasetNode(name, v))
}

// Models lists models by name.
func (r Reader) Models(cursor string, limit int) (Page[Model], error) {
	return list[Model](r.DB, pModel, cursor, limit, false, nil)
}

// Model returns one model.
func (r Reader) Model(name string) (Model, error) {
	return get[Model](r.DB, nameKey(pModel, name), "model "+name)
}

// ModelVersions lists a model's versions, oldest first.
func (r Reader) ModelVersions(name, cursor string, limit int) (Page[ModelVersion], error) {
	return list[ModelVersion](r.DB, pModelVersion+name+"/", cursor, limit, false, func(txn *badger.Txn, mv *ModelVersion) (bool, error) {
		return true, withTags(txn, mv)
	})
}

// ModelVersion returns one model version's document (without its manifest: see Manifest).
func (r Reader) ModelVersion(name string, v int) (ModelVersion, error) {
	var mv ModelVersion
	err := r.DB.View(func(txn *badger.Txn) error {
		var err error
		if mv, err = getModelVersion(txn, name, v); err != nil {
			return err
		}
		return withTags(txn, &mv)
	})
	return mv, err
}

// Manifest returns the canonical manifest of a model version, the bytes approval signs.
func (r Reader) Manifest(name string, v int) ([]byte, error) {
	var out []byte
	err := r.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey(pManifest, name, v))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return notFound("manifest of %s", ModelNode(name, v))
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// HasChunk reports whether a chunk is stored.
func (r Reader) HasChunk(digest string) (bool, error) {
	var ok bool
	err := r.DB.View(func(txn *badger.Txn) error {
		var err error
		ok, err = exists(txn, nameKey(pChunk, digest))
		return err
	})
	return ok, err
}

// Chunk returns a stored chunk's zstd bytes (appended to dst).
func (r Reader) Chunk(dst []byte, digest string) ([]byte, error) {
	err := r.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nameKey(pChunk, digest))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return notFound("chunk %s", digest)
		}
		if err != nil {
			return err
		}
		dst, err = item.ValueCopy(dst)
		return err
	})
	return dst, err
}

// Devices lists devices whose labels match sel (nil matches all).
func (r Reader) Devices(sel Selector, cursor string, limit int) (Page[Device], error) {
	p, err := list[storedDevice](r.DB, pDevice, cursor, limit, false, func(txn *badger.Txn, d *storedDevice) (bool, error) {
		if !sel.Matches(d.Labels) {
			return false, nil
		}
		return true, loadStatus(txn, d)
	})
	out := Page[Device]{Items: make([]Device, len(p.Items)), NextCursor: p.NextCursor}
	for i, d := range p.Items {
		out.Items[i] = d.Device
	}
	return out, err
}

// Device returns one device.
func (r Reader) Device(id string) (Device, error) {
	var d storedDevice
	err := r.DB.View(func(txn *badger.Txn) error {
		var err error
		d, err = getDevice(txn, id)
		return err
	})
	return d.Device, err
}

// DeviceStatus returns a device's status only (ID, presence, reported state, health, outputs:
// no labels or desired state), in one read for a device of the current layout. ErrNotFound when
// the device does not exist.
func (r Reader) DeviceStatus(id string) (Device, error) {
	var d storedDevice
	err := r.DB.View(func(txn *badger.Txn) error {
		d.ID = id
		err := loadStatus(txn, &d)
		if err != nil || !d.legacy {
			return err
		}
		d, err = getDevice(txn, id) // no status key: a device of the previous layout, or none
		return err
	})
	return d.Device, err
}

// Tokens lists API tokens (never their hashes).
func (r Reader) Tokens(cursor string, limit int) (Page[Token], error) {
	p, err := list[storedToken](r.DB, pToken, cursor, limit, false, nil)
	out := Page[Token]{Items: make([]Token, len(p.Items)), NextCursor: p.NextCursor}
	for i, t := range p.Items {
		out.Items[i] = t.Token
	}
	return out, err
}

// TokenCount returns how many API tokens exist.
func (r Reader) TokenCount() (int, error) {
	n := 0
	err := r.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pToken)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// Principal is who a bearer token belongs to.
type Principal struct {
	// Kind is "token" for an API token, "device" for a device token.
	Kind string
	// ID is the token id or the device id.
	ID string
	// Name is the token's name (the identity recorded as actor), or the device id.
	Name string
	Role string
	// ExpiresAt is when an API token stops working (Unix ms); 0 never.
	ExpiresAt int64
}

// PrincipalByTokenHash finds the API token or device owning a token hash.
func (r Reader) PrincipalByTokenHash(hash string) (Principal, error) {
	var p Principal
	err := r.DB.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(nameKey(pTokenHash, hash)); err == nil {
			id, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			var t storedToken
			if err := getJSON(txn, nameKey(pToken, string(id)), &t); err != nil {
				return err
			}
			p = Principal{Kind: "token", ID: t.ID, Name: t.Name, Role: t.Role, ExpiresAt: t.ExpiresAt}
			return nil
		}
		item, err := txn.Get(nameKey(pDeviceToken, hash))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		p = Principal{Kind: "device", ID: string(id), Name: string(id), Role: RoleDevice}
		return nil
	})
	return p, err
}

// SigningKeys lists the hub's public signing keys.
func (r Reader) SigningKeys() ([]SigningKey, error) {
	p, err := list[SigningKey](r.DB, pSigningKey, "", MaxLimit, false, nil)
	return p.Items, err
}

// AuditFilter narrows an audit query.
type AuditFilter struct {
	// Since keeps entries at or after this Unix-ms time.
	Since int64
	// Actor keeps entries of this actor only.
	Actor string
}

// Audit lists audit entries, oldest first.
func (r Reader) Audit(f AuditFilter, cursor string, limit int) (Page[AuditEntry], error) {
	return list[AuditEntry](r.DB, pAudit, cursor, limit, false, func(_ *badger.Txn, e *AuditEntry) (bool, error) {
		return e.Time >= f.Since && (f.Actor == "" || e.Actor == f.Actor), nil
	})
}

// Graph is a lineage subgraph.
type Graph struct {
	Nodes []LineageNode `json:"nodes"`
	Edges []LineageEdge `json:"edges"`
}

// Lineage walks the graph from node: "up" toward sources (what it was made from), "down" toward
// what was made from it, or "both", to depth hops.
func (r Reader) Lineage(node, direction string, depth int) (Graph, error) {
	g := Graph{Nodes: []LineageNode{}, Edges: []LineageEdge{}}
	if depth <= 0 {
		depth = 1
	}
	up := direction == "up" || direction == "both"
	down := direction == "down" || direction == "both"
	if !up && !down {
		return g, invalid("direction must be up, down or both")
	}
	err := r.DB.View(func(txn *badger.Txn) error {
		var start LineageNode
		if err := getJSON(txn, nameKey(pLineageNode, node), &start); err != nil {
			if errors.Is(err, ErrNotFound) {
				return notFound("lineage node %s", node)
			}
			return err
		}
		nodes := map[string]LineageNode{node: start}
		edges := map[string]LineageEdge{}
		frontier := []string{node}
		for d := 0; d < depth && len(frontier) > 0; d++ {
			var next []string
			for _, n := range frontier {
				adj, err := adjacent(txn, n)
				if err != nil {
					return err
				}
				for _, e := range adj {
					dn, upn := Upstream(e)
					var other string
					switch {
					case up && dn == n:
						other = upn
					case down && upn == n:
						other = dn
					default:
						continue
					}
					edges[e.From+"\x00"+e.Kind+"\x00"+e.To] = e
					if _, ok := nodes[other]; !ok {
						var ln LineageNode
						if err := getJSON(txn, nameKey(pLineageNode, other), &ln); err != nil {
							kind, _, _ := strings.Cut(other, ":")
							ln = LineageNode{ID: other, Kind: kind}
						}
						nodes[other] = ln
						next = append(next, other)
					}
				}
			}
			frontier = next
		}
		for _, n := range nodes {
			g.Nodes = append(g.Nodes, n)
		}
		for _, e := range edges {
			g.Edges = append(g.Edges, e)
		}
		sort.Slice(g.Nodes, func(i, j int) bool { return g.Nodes[i].ID < g.Nodes[j].ID })
		sort.Slice(g.Edges, func(i, j int) bool {
			a, b := g.Edges[i], g.Edges[j]
			return a.From+a.Kind+a.To < b.From+b.Kind+b.To
		})
		return nil
	})
	return g, err
}

// adjacent returns every edge touching n, in either direction.
func adjacent(txn *badger.Txn, n string) ([]LineageEdge, error) {
	var out []LineageEdge
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pLineageOut + n + "\x00"), PrefetchValues: true, PrefetchSize: 16})
	for it.Rewind(); it.Valid(); it.Next() {
		var e LineageEdge
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, e)
	}
	it.Close()
	it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pLineageIn + n + "\x00")})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		parts := strings.SplitN(strings.TrimPrefix(string(it.Item().Key()), pLineageIn+n+"\x00"), "\x00", 2)
		if len(parts) != 2 {
			continue
		}
		var e LineageEdge
		if err := getJSON(txn, edgeKey(pLineageOut, parts[1], parts[0], n), &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Object returns the bytes of the manifest, contract or reference profile whose sha256 digest
// is digest ("sha256:HEX").
func (r Reader) Object(digest string) ([]byte, ObjectRef, error) {
	ref, err := get[ObjectRef](r.DB, nameKey(pObject, digest), "object "+digest)
	if err != nil {
		return nil, ref, err
	}
	switch ref.Kind {
	case ObjectManifest:
		m, err := r.Manifest(ref.Name, ref.Version)
		return m, ref, err
	case ObjectContract:
		dv, err := r.DatasetVersion(ref.Name, ref.Version)
		return dv.Contract, ref, err
	case ObjectProfile:
		dv, err := r.DatasetVersion(ref.Name, ref.Version)
		return dv.Profile, ref, err
	case ObjectOutput:
		b, err := r.OutputReference(ref.Name, ref.Version)
		return b, ref, err
	}
	return nil, ref, notFound("object %s of kind %q", digest, ref.Kind)
}

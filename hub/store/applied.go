package store

// AppliedIndex is the highest raft index whose effects are in the state (see appliedIndex),
// without the rest of Status (which reads the node records and asks raft's loop for its
// configuration): a follower polls it while it waits to apply a write it forwarded.
func (s *Store) AppliedIndex() uint64 { return s.appliedIndex() }

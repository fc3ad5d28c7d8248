package store

// AppliedIndex is the highest raft index whose effects are in the state (see appliedIndex),
// without the rest of Status (which reads the node records and asks raft's loop for its
// configuration). To wait for an index, use WaitApplied, which wakes when the FSM applies.
func (s *Store) AppliedIndex() uint64 { return s.appliedIndex() }

package raftstore

import (
	"testing"

	raftbench "github.com/hashicorp/raft/bench"
)

// The hashicorp/raft backend benchmarks, run against a Server-profile (fsync on) database.

func BenchmarkFirstIndex(b *testing.B)  { raftbench.FirstIndex(b, New(openDB(b))) }
func BenchmarkLastIndex(b *testing.B)   { raftbench.LastIndex(b, New(openDB(b))) }
func BenchmarkGetLog(b *testing.B)      { raftbench.GetLog(b, New(openDB(b))) }
func BenchmarkStoreLog(b *testing.B)    { raftbench.StoreLog(b, New(openDB(b))) }
func BenchmarkStoreLogs(b *testing.B)   { raftbench.StoreLogs(b, New(openDB(b))) }
func BenchmarkDeleteRange(b *testing.B) { raftbench.DeleteRange(b, New(openDB(b))) }
func BenchmarkSet(b *testing.B)         { raftbench.Set(b, New(openDB(b))) }
func BenchmarkGet(b *testing.B)         { raftbench.Get(b, New(openDB(b))) }
func BenchmarkSetUint64(b *testing.B)   { raftbench.SetUint64(b, New(openDB(b))) }
func BenchmarkGetUint64(b *testing.B)   { raftbench.GetUint64(b, New(openDB(b))) }

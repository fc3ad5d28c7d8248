package rollout

import (
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/hub/store"
)

// benchStore is a state store on db with a change feed, and a controller that follows it.
func benchStore(db *badger.DB, now func() time.Time) (*statetest.Store, *Controller) {
	st := &statetest.Store{DB: db, Now: now, Changes: store.NewFeed()}
	return st, New(Config{Store: st, Reader: state.Reader{DB: db}, Changes: st.Changes, Now: now})
}

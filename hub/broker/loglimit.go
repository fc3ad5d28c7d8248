package broker

import (
	"sync"
	"time"
)

// logLimiter decides which repeated events get a log line: the first of a key, then at most one
// per interval, reporting how many were left out since the last line; and at most maxLines lines
// per interval over all keys (random client ids would otherwise still make one line each).
// Counters, not logs, are the full record (MetricRejected).
type logLimiter struct {
	interval time.Duration
	maxLines int
	maxKeys  int

	mu          sync.Mutex
	keys        map[string]*limitedKey
	windowStart time.Time
	lines       int
	overflow    int // events left out by the maxLines budget in the current window
}

type limitedKey struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(interval time.Duration, maxLines int) *logLimiter {
	return &logLimiter{interval: interval, maxLines: maxLines, maxKeys: 10000, keys: map[string]*limitedKey{}}
}

// note records an event of key at now. It returns whether to log it and, if so, how many events
// of this key were left out since its last line and how many events of any key were left out
// by the overall budget in the previous window.
func (l *logLimiter) note(key string, now time.Time) (log bool, suppressed, overflow int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.windowStart) >= l.interval {
		overflow = l.overflow
		l.windowStart, l.lines, l.overflow = now, 0, 0
	}
	k := l.keys[key]
	if k != nil && now.Sub(k.last) < l.interval {
		k.suppressed++
		return false, 0, overflow
	}
	if l.lines >= l.maxLines {
		l.overflow++
		return false, 0, overflow
	}
	if k == nil {
		if len(l.keys) >= l.maxKeys {
			for kk, v := range l.keys {
				if now.Sub(v.last) >= l.interval {
					delete(l.keys, kk)
				}
			}
		}
		k = &limitedKey{}
		l.keys[key] = k
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	l.lines++
	return true, suppressed, overflow
}

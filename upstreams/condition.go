package upstreams

import (
	"sync"

	"go.uber.org/zap"
)

// Condition is the state of something that can fail for a while and come
// back: a connection, a watch, a subscription. Every attempt reports its
// outcome with Set; the condition logs when a problem begins or changes, and
// once when it ends, never on every retry. A Pending error (waiting for a
// first answer) is not logged when it begins, only its end is. It is safe
// for concurrent use.
type Condition struct {
	log       *zap.Logger
	failed    string // message of a problem that begins or changes
	recovered string // message of its end
	fields    []zap.Field

	mu  sync.Mutex
	err error
}

// NewCondition returns a condition without a problem that logs to log with
// the two messages, adding fields to both lines.
func NewCondition(log *zap.Logger, failed, recovered string, fields ...zap.Field) *Condition {
	return &Condition{log: log, failed: failed, recovered: recovered, fields: fields}
}

// Set records the latest outcome: the problem, or nil once it works. It
// reports whether that changed the condition: a problem began, changed its
// message, or ended.
func (c *Condition) Set(err error) (changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.err
	switch {
	case err == nil && old == nil:
		return false
	case err == nil:
		c.err = nil
		c.log.Info(c.recovered, append(c.fields, zap.NamedError("previous_error", old))...)
		return true
	case old != nil && old.Error() == err.Error():
		return false // the same problem again: say nothing
	}
	c.err = err
	if kindsOf(err) != 0 { // not a wait (Pending), which is no problem yet
		c.log.Error(c.failed, append(c.fields, zap.Error(err))...)
	}
	return true
}

// Err is the current problem, or nil.
func (c *Condition) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

package safeio

import (
	"strings"
	"sync"
)

// Injector is an FS.Fault that tests arm and disarm while the code under
// test runs in other goroutines: armed, it fails every step of one kind on
// a path containing a given string.
type Injector struct {
	mu    sync.Mutex
	armed bool
	op    Op
	sub   string
	hits  int
}

// Arm makes every later step op on a path containing sub ("" for any path)
// fail with ErrInjected.
func (in *Injector) Arm(op Op, sub string) {
	in.mu.Lock()
	in.armed, in.op, in.sub, in.hits = true, op, sub, 0
	in.mu.Unlock()
}

// Disarm stops the failures.
func (in *Injector) Disarm() {
	in.mu.Lock()
	in.armed = false
	in.mu.Unlock()
}

// Hits is how many steps failed since the last Arm.
func (in *Injector) Hits() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.hits
}

// Fault is the method to put in FS.Fault.
func (in *Injector) Fault(op Op, path string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.armed || op != in.op || !strings.Contains(path, in.sub) {
		return nil
	}
	in.hits++
	return ErrInjected
}

// Steps lists the steps a durable write can fail at, in order, for tests
// that fail each in turn.
func Steps() []Op { return []Op{OpCreate, OpWrite, OpSync, OpRename, OpSyncDir} }

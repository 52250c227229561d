package imapd

import (
	"context"
	"runtime/debug"
	"time"
)

// Memory of idle connections. Go's collector lets the heap grow to twice what was live at the
// last collection before it collects again, and returns to the OS only what lies beyond that
// goal. A burst of logins leaves the goal high: each login's password hash (argon2id, 7 MiB) is
// live while it runs, and the TLS handshakes' garbage counts until the next collection. Once the
// logins stop, connections that only idle allocate nothing, so no collection comes to lower the
// goal, and the process keeps two to three times the memory its idle connections use (73 to
// 89 KiB RSS per idle IMAP connection instead of about 30). So when logins have stopped for
// trimQuiet, the trimmer collects once and returns the free memory to the OS
// (debug.FreeOSMemory), at most once per trimEvery: the cost is one collection after a burst,
// the gain is RSS close to what is live.
const (
	trimQuiet = time.Second
	trimEvery = time.Minute
)

type memTrim struct {
	kick chan struct{}
	trim func() // debug.FreeOSMemory; tests count
}

func newMemTrim(ctx context.Context, trim func()) *memTrim {
	t := &memTrim{kick: make(chan struct{}, 1), trim: trim}
	if t.trim == nil {
		t.trim = debug.FreeOSMemory
	}
	go t.run(ctx)
	return t
}

// loggedIn tells the trimmer that a login happened; it never blocks.
func (t *memTrim) loggedIn() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *memTrim) run(ctx context.Context) {
	timer := time.NewTimer(trimQuiet)
	timer.Stop()
	for {
		select { // a first login
		case <-ctx.Done():
			return
		case <-t.kick:
		}
		timer.Reset(trimQuiet)
	quiet:
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.kick:
				timer.Reset(trimQuiet)
			case <-timer.C:
				break quiet
			}
		}
		t.trim()
		select {
		case <-ctx.Done():
			return
		case <-time.After(trimEvery):
		}
	}
}

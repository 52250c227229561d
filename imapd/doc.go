// Package imapd is Postie's IMAP server: go-imap v2's protocol engine (imapserver) with our own
// Session over the maildir store, serving IMAP4rev1 and IMAP4rev2 to mail clients.
//
// # Route: a fork of go-imap kept in the repository
//
// go-imap v2.0.0-beta.8, the newest release served, lacks most of what clients expect of a
// server today (CONDSTORE/QRESYNC, SORT/THREAD, CONTEXT, QUOTA, ID, ...) and had parser defects
// that answered client errors NO [SERVERBUG] or hung (issue 13). Two routes were open: a layer in
// imapd that parses extended commands before the library's dispatcher, or a fork. A layer must
// re-frame every command (literals, LITERAL+, STARTTLS) ahead of a parser it cannot see into; the
// guard that did so (guard.go, deleted) needed reflect and unsafe to reach the library's reader,
// and still left the parser's own answers wrong. So the library is forked, and the fixes and
// extensions live where the protocol is parsed and written:
//
//   - third_party/go-imap is github.com/emersion/go-imap/v2 at v2.0.0-beta.8, wired in by a
//     replace directive in go.mod (import paths are unchanged). Its first commit in this
//     repository is the untouched release; every change since is a small commit of its own
//     ("go-imap: ...") and a line in third_party/go-imap/UPSTREAM.md, so
//     git diff <that commit> -- third_party/go-imap is exactly our changes. Its own tests keep
//     passing (tests/forks_test.go runs them).
//   - Upstream's, in the fork: the wire codec (internal/imapwire), the command dispatcher and
//     encoders (imapserver), the types (package imap), the client (imapclient, used by tests).
//   - Ours, in the fork: the parser's error answers and literal handling, the extensions'
//     parsing and responses (condstore.go, sort.go, thread.go, searchupdate.go, ...), the
//     envelope's source route, BINARY's origin, LSUB's flag, one EXISTS per poll
//     (tracker_coalesce.go). The fork knows nothing of storage: each extension is an optional
//     Session interface (SessionCondStore, SessionSort, ...) that imapd implements.
//   - Ours, in imapd: every Session method over maildir (state, flags, \Recent, search, sort,
//     thread, fetch of sections from byte offsets in mimeparse), the registry that keeps the
//     sessions of one mailbox in step, limits, logging, the junk-training hooks.
//
// The fork's files of our own (git diff --diff-filter=A de88cf1 -- third_party/go-imap), each an
// extension's parsing and responses, with the Session interface imapd implements for it:
//
//   - imapserver/condstore.go: CONDSTORE and QRESYNC (RFC 7162): CHANGEDSINCE, UNCHANGEDSINCE,
//     MODSEQ, [MODIFIED], VANISHED, ENABLE QRESYNC, SELECT (QRESYNC ...) (SessionCondStore).
//   - imapserver/sort.go: SORT and UID SORT (RFC 5256, DISPLAYFROM/DISPLAYTO of RFC 5957), ESORT's
//     RETURN options and PARTIAL ranges (RFC 5267, RFC 9394) for SORT and SEARCH (SessionSort).
//   - imapserver/thread.go: THREAD and UID THREAD, ORDEREDSUBJECT and REFERENCES (SessionThread).
//   - imapserver/searchupdate.go: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): RETURN (UPDATE),
//     ADDTO/REMOVEFROM, CANCELUPDATE (SessionSearchUpdate, SessionSortUpdate).
//   - imapserver/multiappend.go: the one APPEND parser (flags, date, literal8, UTF8), MULTIAPPEND
//     (RFC 3502) as one transaction (SessionAppendTx); a session without it goes to
//     Session.Append through append.go's plainAppendTx.
//   - imapserver/catenate.go: CATENATE (RFC 4469): TEXT and URL parts, IMAP URLs (SessionCatenate).
//   - imapserver/id.go: ID (RFC 2971) in any state, with §3.3's limits (SessionID).
//   - imapserver/quota.go: GETQUOTA, GETQUOTAROOT, SETQUOTA (RFC 9208) (SessionQuota).
//   - imapserver/compress.go: COMPRESS=DEFLATE (RFC 4978) in the engine, and its memory bound.
//   - imapserver/notify.go: NOTIFY SET/NONE (RFC 5465), parsed and checked (SessionNotify).
//   - imapserver/preview.go: FETCH PREVIEW [(LAZY)] (RFC 8970).
//   - imapserver/connbuf.go: a connection's 1 KiB bufio reader and writer, and the gatherer under the
//     writer that sends a response in large writes (idle memory, issue 13).
//   - imapserver/idlestart.go: IDLE without a goroutine parked for it (SessionIdleStarter).
//   - imapserver/tracker_coalesce.go: one EXISTS per poll, after the expunges; hooks for a
//     session's own state in updates (\Recent in FLAGS, RECENT after EXISTS).
//   - imapserver/updatewriter.go: Conn.UpdateWriter, for updates a command must send before its
//     own responses (FLAGS before the FETCH of a STORE that defines a keyword).
//   - internal/imapwire/peek.go: Decoder.SPBefore, to tell an optional argument from the next item.
//   - sortdata.go (package imap): SortKey, SortCriterion and the THREAD result types.
//   - Tests: commands_fuzz_test.go (client input through the whole server, every extension on),
//     append_test.go, catenate_test.go, connbuf_test.go, idlestart_test.go, partial_test.go,
//     tracker_coalesce_test.go, internal/imapwire/decoder_fuzz_test.go.
//
// Upstream's files changed in place (conn.go's dispatch, decoder.go, fetch.go, search.go, select.go,
// store.go, tracker.go, ...) are listed change by change in third_party/go-imap/UPSTREAM.md.
//
// Taking an upstream fix: see third_party/README.md (diff the new upstream release against the
// base, apply it as its own commit, update the base version there and in UPSTREAM.md, and run
// the fork's tests and TestIMAPTest).
//
// # Compliance
//
// tests/imaptest_test.go runs Dovecot's imaptest compliance suite (kit in third_party/imaptest)
// against `postie serve` and fails on any failed group; the groups it skips are extensions not
// advertised.
//
// \Recent (RFC 3501 §2.3.2) is kept for IMAP4rev1 clients (recent.go): a message is recent in
// the one session that first selects its folder after it arrived, whatever process that is.
package imapd

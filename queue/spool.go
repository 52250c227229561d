package queue

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postie/envelope"
)

// The spool directory holds, per message, "<id>.msg" (the message as
// received) and "<id>.json" (its envelope and delivery state). The state
// file is the commit point: it is written last, through a temporary
// ".tmp-<id>.json-*" (safeio.FS.Replace) and a rename, so a message file
// without a state file is an Enqueue that never finished. Besides those:
//
//	owner.lock   flock(LOCK_EX) held by the process that runs the scheduler; holds its PID
//	write.lock   flock(LOCK_SH) held by other processes while they enqueue; the owner
//	             takes it exclusively while it cleans up after a crash
//	admin/       requests from other processes (see admin.go)
const (
	msgExt        = ".msg"
	stateExt      = ".json"
	tmpExt        = ".tmp"
	ownerLockName = "owner.lock"
	writeLockName = "write.lock"
	adminDirName  = "admin"
	stateVersion  = 1

	// tmpPrefix starts the temporary names of safeio.FS.Replace; tmpExt
	// ends those of publish (and of state files written by older versions).
	tmpPrefix = ".tmp-"
)

// isTemp reports whether a spool file name is a temporary one, which only
// a write in progress (or cut short by a crash) has.
func isTemp(name string) bool {
	return strings.HasPrefix(name, tmpPrefix) || strings.HasSuffix(name, tmpExt)
}

// Recipient statuses, as kept in RcptState.Status.
const (
	StatusPending   = "pending"   // not yet delivered; will be tried again
	StatusDelivered = "delivered" // accepted by the remote server
	StatusFailed    = "failed"    // failed for good; its DSN is not yet handed to the Bouncer
	StatusBounced   = "bounced"   // failed for good and the sender was told
	StatusDropped   = "dropped"   // failed for good and nobody could be told (null sender) or wanted to be (NOTIFY)
	// StatusNotify: delivered, here or to a host without DSN support, and
	// the sender's NOTIFY=SUCCESS is still to be answered; it becomes
	// delivered once the notice is handed over.
	StatusNotify = "notify"
)

// RcptState is the delivery state of one recipient of a queued message.
type RcptState struct {
	Addr        string    `json:"addr"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // the last failure, for people
	Reply       string    `json:"reply,omitempty"`      // the last SMTP reply, "550 5.1.1 text"; empty if none
	DSNStatus   string    `json:"dsn_status,omitempty"` // RFC 3463 status for a DSN, "5.1.1"
	RemoteMTA   string    `json:"remote_mta,omitempty"` // the host that gave Reply, when known
	Reason      string    `json:"reason,omitempty"`     // why it failed for good, when the reply alone does not say

	// The recipient's DSN parameters (RFC 3461), absent in older spools:
	// NOTIFY (zero: not given) and ORCPT ("rfc822;addr", decoded).
	Notify envelope.Notify `json:"notify,omitzero"`
	ORcpt  string          `json:"orcpt,omitempty"`
	// Relayed: delivered to a host without DSN support, so a success
	// notice NOTIFY asked for says "relayed" rather than "delivered".
	Relayed bool `json:"relayed,omitempty"`
}

// done reports whether nothing more will happen to the recipient.
func (r *RcptState) done() bool {
	return r.Status == StatusDelivered || r.Status == StatusBounced || r.Status == StatusDropped
}

// state is the content of a state file.
type state struct {
	Version       int       `json:"version"`
	ID            string    `json:"id"`
	EnvID         string    `json:"env_id,omitempty"` // the front-end's transaction ID, for logs
	From          string    `json:"from"`
	Created       time.Time `json:"created"`
	Size          int64     `json:"size"`
	RemoteAddr    string    `json:"remote_addr,omitempty"`
	AuthUser      string    `json:"auth_user,omitempty"`
	DelayNotified bool      `json:"delay_notified,omitempty"`
	Cancelled     bool      `json:"cancelled,omitempty"`    // bounced by the administrator
	NoticeTries   int       `json:"notice_tries,omitempty"` // failed hand-overs of the pending DSN
	NoticeNext    time.Time `json:"notice_next,omitzero"`   // when to try the hand-over again
	// The message's parameters, absent (false, "") in older spools:
	// REQUIRETLS (RFC 8689), RET and ENVID (RFC 3461).
	RequireTLS bool        `json:"require_tls,omitempty"`
	Ret        string      `json:"ret,omitempty"`
	DSNEnvID   string      `json:"dsn_envid,omitempty"`
	Rcpts      []RcptState `json:"rcpts"`
}

func decodeState(data []byte) (*state, error) {
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("unknown state version %d", st.Version)
	}
	if !validID(st.ID) || len(st.Rcpts) == 0 {
		return nil, errors.New("state file lacks an ID or recipients")
	}
	return &st, nil
}

func readState(path string) (*state, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := decodeState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if base := filepath.Base(path); base != st.ID+stateExt {
		return nil, fmt.Errorf("%s: holds ID %q", path, st.ID)
	}
	return st, nil
}

// writeState replaces the state file with st: a temporary file written,
// fsynced and renamed over it. The caller fsyncs the directory (dirSync).
func (q *Queue) writeState(st *state) error {
	return q.fs.Replace(filepath.Join(q.dir, st.ID+stateExt), encodeState(st), 0o600)
}

// encodeState is the state file's form: indented JSON, for the admin who
// reads it. Plain data: encoding cannot fail.
func encodeState(st *state) []byte {
	data, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		panic(fmt.Sprintf("queue: encoding state: %v", err))
	}
	return data
}

// publish writes data under path through a temporary name and a rename, so
// a reader polling the directory never sees it half-written (admin request
// and answer files: small, not worth an fsync).
func publish(path string, data []byte) error {
	err := os.WriteFile(path+tmpExt, data, 0o600)
	if err == nil {
		err = os.Rename(path+tmpExt, path)
	}
	if err != nil {
		os.Remove(path + tmpExt)
	}
	return err
}

// newID returns a fresh queue ID: 16 characters of lower-case base32hex
// carrying the time in milliseconds (so IDs sort by age) and 32 random bits.
func newID(now time.Time) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	// b[6:8] are zero after the shift; fill them and two more with randomness.
	rand.Read(b[6:]) // never fails: since Go 1.24 it crashes the program instead
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// validID reports whether id has the form newID makes, so that it can be
// used to build a path (IDs come from the command line).
func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}

// ownerPID reads the PID the owner wrote into its lock file, for messages.
func ownerPID(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, ownerLockName))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

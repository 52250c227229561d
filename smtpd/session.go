package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"postie/accounts"
	"postie/envelope"
)

// session is one client's state between EHLO and the end of the
// connection (or STARTTLS, after which go-smtp starts a new one). go-smtp
// calls it from the connection's goroutine, except Data under BDAT, which
// runs on its own goroutine while RSET or a close may call Reset/Logout:
// hence the mutex.
type session struct {
	srv      *Server
	conn     *smtp.Conn
	tc       *trackedConn // nil only for connections we did not accept
	log      *slog.Logger
	ip       netip.Addr
	loopback bool
	tlsDesc  string // "TLS1.3 TLS_AES_128_GCM_SHA256"; "" in plaintext
	// outside: the MX role and a client not in TrustedNetworks. With
	// Options.Checks, name and blocked are its lookups, started with
	// the session.
	outside bool
	name    *lookup[string]
	blocked *lookup[error]
	// endLookups cancels the lookups when the session ends (Logout: the
	// connection closed, or STARTTLS replaced the session), so a client
	// that hangs up leaves no lookup running.
	endLookups context.CancelFunc

	mu           sync.Mutex
	greeting     string         // the EHLO/HELO argument, checked by validHelo
	hungUp       bool           // hangUp closed the connection
	user         *accounts.User // submission: set by a successful AUTH
	authFailures int
	inTx         bool // between MAIL and the end of the transaction
	from         string
	helo         string
	to           []string
	seen         map[string]bool // envelope.Key of each recipient in to
	resv         *reservation    // rate-limit slot taken at MAIL
	early        any             // Checks.StartMail's work for this transaction
	endEarly     context.CancelFunc
	params       envelope.Params       // MAIL's REQUIRETLS, RET, ENVID
	rcptParams   []envelope.RcptParams // RCPT's NOTIFY, ORCPT, parallel to to
}

// lookup is a value being computed by its own goroutine.
type lookup[T any] struct {
	done chan struct{}
	v    T
}

func startLookup[T any](f func() T) *lookup[T] {
	l := &lookup[T]{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.v = f()
	}()
	return l
}

// wait returns the value, or the zero value if ctx ends first.
func (l *lookup[T]) wait(ctx context.Context) T {
	var zero T
	if l == nil {
		return zero
	}
	select {
	case <-l.done:
		return l.v
	case <-ctx.Done():
		return zero
	}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if s.isClosing() {
		return nil, errShuttingDown
	}
	nc := c.Conn()
	tc := trackedOf(nc)
	ip := addrIP(nc.RemoteAddr())
	sess := &session{srv: s, conn: c, tc: tc, ip: ip, loopback: ip.IsLoopback()}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tlsDesc = tlsDescription(st)
	}
	var id uint64
	if tc != nil {
		id = tc.id
	}
	sess.log = s.log.With("conn", id, "remote", ip.String())
	// go-smtp asks for a session at the first EHLO/HELO (and the first
	// after STARTTLS) and would echo its argument in the reply.
	if h := c.Hostname(); !validHelo(h) {
		sess.logRefusal("EHLO refused", "helo", logSafe(h, maxLoggedAddr), "reply", errBadHelo.Error())
		return nil, errBadHelo
	}
	sess.greeting = c.Hostname()
	if s.opts.Role == RoleSubmission {
		return &authSession{sess}, nil
	}
	sess.outside = !sess.trusted()
	if chk := s.opts.Checks; chk != nil && sess.outside && ip.IsValid() {
		ctx, cancel := context.WithCancel(s.ctx)
		sess.endLookups = cancel
		sess.name = startLookup(func() string { return chk.ClientName(ctx, ip) })
		sess.blocked = startLookup(func() error { return chk.Blocked(ctx, ip) })
	}
	return sess, nil
}

// cutShort reports whether the connection's reading ended (a deadline) while
// go-smtp read the command now at hand: bufio hands over the part of a line
// that came before the end as if it were a whole line, and such a command is
// not acted on: the caller answers errCutShort, and go-smtp then reads the
// timeout, says 421 once more and closes.
func (s *session) cutShort() bool { return s.tc != nil && s.tc.Stopped() }

// errCutShort answers a command whose line was cut short by a deadline.
var errCutShort = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout, closing connection"}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.cutShort() {
		return errCutShort
	}
	if s.srv.isClosing() {
		if s.tc != nil {
			s.tc.kill()
		}
		return errShuttingDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.hungUp:
		return errClosing
	case s.inTx:
		return errNestedMail
	}
	var (
		addr string
		resv *reservation
		err  error
	)
	params, perr := s.mailParams(opts)
	switch {
	case perr != nil:
		err = perr
	case s.srv.opts.Role == RoleSubmission:
		addr, resv, err = s.mailSubmission(from)
	default:
		addr, resv, err = s.mailMX(from)
	}
	if err != nil {
		s.logRefusal("MAIL refused", "from", logSafe(from, maxLoggedAddr), "user", s.userName(), "reply", err.Error())
		s.count("mail", err)
		return err
	}
	s.inTx, s.from, s.helo, s.to, s.seen, s.resv = true, addr, s.greeting, nil, nil, resv
	s.params, s.rcptParams = params, nil
	if chk := s.srv.opts.Checks; chk != nil && s.outside && s.ip.IsValid() {
		// Cancelled when the transaction ends: a client looping MAIL and
		// RSET (which the rate limit does not count) keeps at most one
		// SPF check running.
		ctx, cancel := context.WithCancel(s.srv.ctx)
		s.early, s.endEarly = chk.StartMail(ctx, s.ip, s.greeting, addr), cancel
	}
	if s.tc != nil {
		s.tc.setBusy(true)
	}
	return nil
}

func (s *session) mailMX(from string) (string, *reservation, error) {
	addr := ""
	if from != "" {
		var ok bool
		if addr, ok = checkSender(from); !ok {
			return "", nil, errBadSender
		}
	}
	if limit := s.srv.opts.MessagesPerMinutePerIP; limit > 0 && s.outside {
		key, now := limitKey(s.ip), s.srv.opts.Now()
		if !s.srv.ipRate.take(key, limit, now) {
			return "", nil, errRateIP
		}
		return addr, &reservation{s.srv.ipRate, key, now}, nil
	}
	return addr, nil, nil
}

func (s *session) mailSubmission(from string) (string, *reservation, error) {
	u := s.user
	switch {
	case u == nil:
		return "", nil, errAuthRequired
	case from == "":
		return "", nil, errNullSender
	}
	addr, ok := checkSender(from)
	if !ok {
		return "", nil, errBadSender
	}
	if !s.srv.opts.Auth.CanSendAs(u, addr) {
		return "", nil, errNotYourSender
	}
	limit := s.srv.opts.MaxMessagesPerHour
	if u.MaxMessagesPerHour > 0 {
		limit = u.MaxMessagesPerHour
	}
	if limit > 0 {
		key, now := envelope.Key(u.Address), s.srv.opts.Now()
		if !s.srv.userRate.take(key, limit, now) {
			return "", nil, errRateUser
		}
		return addr, &reservation{s.srv.userRate, key, now}, nil
	}
	return addr, nil, nil
}

// Rcpt adds a recipient: ours on both roles (postmaster always, RFC 5321
// §4.5.1), anyone's for an authenticated submission, nobody else's.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.cutShort() {
		return errCutShort
	}
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 §4.1.1.3: <Postmaster> without a domain, in any case.
		to = s.srv.postmaster()
	}
	addr, err := envelope.Normalize(to)
	// go-smtp echoes an accepted address; envelope lets C1 controls (and
	// any control inside an address literal) by.
	if err != nil || hasControl(addr) {
		s.logRefusal("RCPT refused", "to", logSafe(to, maxLoggedAddr), "reply", errBadRcpt.Error())
		s.count("rcpt", errBadRcpt)
		return errBadRcpt
	}
	params, perr := rcptParams(opts)
	if perr != nil {
		s.logRefusal("RCPT refused", "to", addr, "reply", perr.Error())
		s.count("rcpt", perr)
		return perr
	}
	key := envelope.Key(addr)
	s.mu.Lock()
	inTx, dup, user, from := s.inTx, s.seen[key], s.user, s.from
	s.mu.Unlock()
	switch {
	case !inTx:
		return errNoMail
	case dup:
		return nil // one copy each: go-smtp still counts it toward MaxRecipients
	}
	if reply := s.checkRcpt(addr, user); reply != nil {
		s.logRefusal("RCPT refused", "from", from, "to", addr, "user", userName(user), "reply", reply.Error())
		s.count("rcpt", reply)
		return reply
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inTx || s.seen[key] {
		return nil
	}
	if s.seen == nil {
		s.seen = make(map[string]bool)
	}
	s.to = append(s.to, addr)
	s.rcptParams = append(s.rcptParams, params)
	s.seen[key] = true
	return nil
}

func (s *session) checkRcpt(addr string, user *accounts.User) *smtp.SMTPError {
	local, domain := envelope.Split(addr)
	if !s.srv.opts.Recipients.IsLocalDomain(domain) {
		if s.srv.opts.Role == RoleSubmission && user != nil {
			return s.checkSuppressed(addr) // relay for the authenticated, unless it hard-bounced
		}
		return errRelayDenied
	}
	if strings.EqualFold(local, "postmaster") {
		// Not even a listed client is kept from the postmaster, who can
		// then hear about a wrong listing (RFC 5321 §4.5.1).
		return nil
	}
	if err := s.blocked.wait(s.srv.ctx); err != nil {
		return replyFor(err)
	}
	return replyFor(s.srv.opts.Recipients.CheckRecipient(s.srv.ctx, addr))
}

// Data hands the message to Delivery and turns its per-recipient results
// into the one reply SMTP allows.
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	env := &envelope.Envelope{
		ID: rand.Text(), From: s.from, To: append([]string(nil), s.to...),
		Helo: s.helo, Protocol: s.protocol(), TLS: s.tlsDesc, Received: s.srv.opts.Now(),
	}
	if s.ip.IsValid() {
		env.RemoteAddr = s.ip.String()
	}
	env.Inbound, env.Early = s.outside, s.early
	env.Params, env.RcptParams = s.params, append([]envelope.RcptParams(nil), s.rcptParams...)
	user := s.user
	s.mu.Unlock()
	if env.Inbound {
		env.ClientName = s.name.wait(s.srv.ctx)
	}
	if user != nil {
		env.AuthUser = user.Address
	}
	in := &trackReader{r: r}
	if len(env.To) == 0 {
		s.logMessage(env, in.n, "refused", errNoRecipients)
		return errNoRecipients
	}
	var body io.Reader = in
	if s.srv.opts.Role == RoleSubmission {
		b, reply := s.prepareMessage(in, env, user)
		if reply != nil {
			s.logMessage(env, in.n, "refused", reply)
			return reply
		}
		body = b
	}
	out := &trackReader{r: body}
	errs := s.srv.opts.Delivery.Deliver(s.srv.ctx, env, out)
	reply, accepted := s.verdict(env, in, out, errs)
	if accepted {
		s.mu.Lock()
		s.resv = nil // the message counts
		s.mu.Unlock()
	}
	return reply
}

// verdict chooses the DATA reply. All accepted: 250. None: the first
// temporary error if there is one (a retry then loses nothing), else the
// first permanent one. Some: 250, because those copies are stored and a
// failure reply would make the client send them all again; each refused
// copy is logged as an error, for the postmaster to see. (RFC 5321 has no
// per-recipient DATA reply outside LMTP, and such late refusals, a mailbox
// filled since RCPT, are rare.)
func (s *session) verdict(env *envelope.Envelope, in, out *trackReader, errs []error) (*smtp.SMTPError, bool) {
	errs = s.fitResults(env, errs)
	var firstTemp, firstPerm *smtp.SMTPError
	accepted := 0
	for _, err := range errs {
		switch reply := replyFor(err); {
		case reply == nil:
			accepted++
		case reply.Temporary() && firstTemp == nil:
			firstTemp = reply
		case !reply.Temporary() && firstPerm == nil:
			firstPerm = reply
		}
	}
	ok := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + env.ID}
	switch {
	case in.err != nil:
		reply := readFailure(in.err)
		if accepted > 0 {
			s.log.Error("delivery accepted a message that was not received completely", "id", env.ID, "err", in.err)
		}
		s.logMessage(env, in.n, "refused", reply, "err", in.err)
		return reply, false
	case accepted > 0 && !out.eof:
		// Stored, but maybe cut short: ask for the message again rather
		// than keep a truncated copy as the only one.
		s.log.Error("delivery returned without reading the whole message", "id", env.ID)
		s.logMessage(env, in.n, "refused", errTempLocal)
		return errTempLocal, false
	case accepted == len(env.To):
		s.logMessage(env, in.n, "accepted", ok)
		return ok, true
	case accepted > 0:
		for i, err := range errs {
			if err != nil {
				s.log.Error("message accepted but not delivered to one recipient", "id", env.ID, "from", env.From, "to", env.To[i], "err", err)
			}
		}
		s.logMessage(env, in.n, "partial", ok, "failed", len(env.To)-accepted)
		return ok, true
	}
	reply := firstPerm
	if firstTemp != nil {
		reply = firstTemp
	}
	for i, err := range errs {
		s.logRefusal("recipient refused at DATA", "id", env.ID, "to", env.To[i], "err", err)
	}
	s.logMessage(env, in.n, "refused", reply)
	return reply, false
}

// fitResults makes errs one per recipient: a Delivery that returns too
// few results has not stored the rest.
func (s *session) fitResults(env *envelope.Envelope, errs []error) []error {
	if len(errs) == len(env.To) {
		return errs
	}
	s.log.Error("delivery returned a wrong number of results", "id", env.ID, "results", len(errs), "recipients", len(env.To))
	fixed := make([]error, len(env.To))
	for i := range fixed {
		fixed[i] = errTempLocal
		if i < len(errs) {
			fixed[i] = errs[i]
		}
	}
	return fixed
}

// logMessage writes the one line per message accepted or refused
// (refusals within the connection's bound).
func (s *session) logMessage(env *envelope.Envelope, size int64, outcome string, reply *smtp.SMTPError, extra ...any) {
	s.count("data", reply)
	args := []any{
		"id", env.ID, "role", s.srv.opts.Role.String(), "from", env.From, "to", env.To,
		"size", size, "outcome", outcome, "code", reply.Code, "reply", reply.Message,
	}
	if env.AuthUser != "" {
		args = append(args, "user", env.AuthUser)
	}
	if env.TLS != "" {
		args = append(args, "tls", env.TLS)
	}
	if outcome == "refused" {
		s.logRefusal("message", append(args, extra...)...)
		return
	}
	s.log.Info("message", append(args, extra...)...)
}

// Reset ends the transaction (after DATA, RSET, a repeated EHLO). A
// rate-limit slot taken at MAIL is given back unless a message went out.
//
// go-smtp calls it for a repeated EHLO/HELO after taking the new argument
// and before echoing it in its reply; an invalid one is answered here
// instead, and the connection closed so that the echo never goes out.
func (s *session) Reset() {
	h := s.conn.Hostname()
	s.mu.Lock()
	changed := h != s.greeting && !s.hungUp
	s.mu.Unlock()
	if changed {
		if !validHelo(h) {
			s.logRefusal("EHLO refused", "helo", logSafe(h, maxLoggedAddr), "reply", errBadHeloClosing.Error())
			s.hangUp(errBadHeloClosing)
		} else {
			s.mu.Lock()
			s.greeting = h
			s.mu.Unlock()
		}
	}
	s.endTx()
}

// endTx ends the transaction without looking at the greeting.
func (s *session) endTx() {
	s.mu.Lock()
	resv, wasTx, endEarly := s.resv, s.inTx, s.endEarly
	s.inTx, s.from, s.to, s.seen, s.resv, s.early, s.endEarly = false, "", nil, nil, nil, nil, nil
	s.params, s.rcptParams = envelope.Params{}, nil
	s.mu.Unlock()
	resv.release()
	if endEarly != nil {
		endEarly()
	}
	if wasTx && s.tc != nil {
		s.tc.setBusy(false)
	}
}

// Logout is called when the connection closes or switches to TLS.
func (s *session) Logout() error {
	s.endTx()
	if s.endLookups != nil {
		s.endLookups()
	}
	return nil
}

// hangUp writes reply past go-smtp and closes the connection: for a
// command that go-smtp has already taken and would answer with the
// client's input echoed. go-smtp's own reply then fails on the closed
// connection; commands it still holds buffered are refused (hungUp).
// go-smtp flushes every reply, so nothing of its own is pending here.
func (s *session) hangUp(reply *smtp.SMTPError) {
	s.mu.Lock()
	s.hungUp = true
	s.mu.Unlock()
	nc := s.conn.Conn()
	e := reply.EnhancedCode
	fmt.Fprintf(nc, "%d %d.%d.%d %s\r\n", reply.Code, e[0], e[1], e[2], clean(reply.Message))
	nc.Close()
}

// maxRefusalLogs bounds the refusals one connection writes to the log
// (refused EHLO, MAIL, RCPT, AUTH and messages): a client can send them
// without end, and each would cost a line.
const maxRefusalLogs = 20

// logRefusal logs a refusal at level Info, within the connection's bound.
func (s *session) logRefusal(msg string, args ...any) { s.logBounded(slog.LevelInfo, msg, args...) }

// logBounded logs at most maxRefusalLogs lines per connection, then one
// line saying the rest are not logged.
func (s *session) logBounded(level slog.Level, msg string, args ...any) {
	if s.tc == nil { // a connection we did not accept (tests)
		s.log.Log(context.Background(), level, msg, args...)
		return
	}
	switch n := s.tc.refusalLogs.Add(1); {
	case n <= maxRefusalLogs:
		s.log.Log(context.Background(), level, msg, args...)
	case n == maxRefusalLogs+1:
		s.log.Info("further refusals on this connection are not logged", "logged", maxRefusalLogs)
	}
}

// maxHeloLen is the longest EHLO/HELO argument taken: a domain has at
// most 255 octets (RFC 5321 §4.5.3.1.2); an address literal is shorter.
const maxHeloLen = 255

// validHelo accepts an EHLO/HELO argument that may be echoed and logged:
// not empty, not too long, UTF-8 (RFC 6531 allows U-labels) and free of
// control characters. It is deliberately not a full domain check: real
// clients send names with underscores, bare words and the like, which
// cost nothing.
func validHelo(h string) bool {
	if h == "" || len(h) > maxHeloLen || !utf8.ValidString(h) {
		return false
	}
	return !hasControl(h)
}

// hasControl reports whether s holds a C0 or C1 control character or DEL.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// trusted reports whether the client is in Options.TrustedNetworks.
func (s *session) trusted() bool {
	for _, p := range s.srv.opts.TrustedNetworks {
		if p.Contains(s.ip) {
			return true
		}
	}
	return false
}

// postmaster is the address that a bare <Postmaster> stands for.
func (srv *Server) postmaster() string {
	if srv.opts.Postmaster != "" {
		return srv.opts.Postmaster
	}
	return "postmaster@" + srv.opts.Hostname
}

func (s *session) protocol() string {
	switch {
	case s.srv.opts.Role == RoleMX && s.tlsDesc == "":
		return "ESMTP"
	case s.srv.opts.Role == RoleMX:
		return "ESMTPS"
	case s.tlsDesc == "":
		return "ESMTPA" // RFC 3848; loopback only
	}
	return "ESMTPSA"
}

func (s *session) userName() string { return userName(s.user) }

func userName(u *accounts.User) string {
	if u == nil {
		return ""
	}
	return u.Address
}

// trackReader counts bytes, and remembers the first read error and
// whether the end was reached.
type trackReader struct {
	r   io.Reader
	n   int64
	err error
	eof bool
}

func (t *trackReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	t.n += int64(n)
	switch {
	case err == io.EOF:
		t.eof = true
	case err != nil && t.err == nil:
		t.err = err
	}
	return n, err
}

// maxLoggedAddr bounds a refused address written to the log: it comes
// straight from a command line of up to 64 KiB.
const maxLoggedAddr = 256

// checkSender accepts what go-smtp parsed as a reverse-path by the one
// rule for addresses from elsewhere, envelope.ValidateSender (the queue
// applies the same rule, so what we accept we can also bounce to), and
// returns it with its domain in canonical form.
func checkSender(addr string) (string, bool) {
	if envelope.ValidateSender(addr) != nil || hasControl(addr) { // C1 controls pass ValidateSender
		return "", false
	}
	local, domain := envelope.Split(addr)
	return local + "@" + envelope.CanonDomain(domain), true
}

func tlsDescription(st tls.ConnectionState) string {
	return strings.ReplaceAll(tls.VersionName(st.Version), " ", "") + " " + tls.CipherSuiteName(st.CipherSuite)
}

// Package rspamd is a client for rspamd's HTTP protocol, for the
// organisations that already run rspamd beside Postie.
//
// Check sends one message with its SMTP envelope (Meta) to the normal
// worker's /checkv2 endpoint and returns rspamd's verdict (Result): its
// action, score, symbols, and an X-Spamd-Result header value recording
// them. The caller maps the action: Result.Reject (rspamd's "reject") to a
// permanent refusal (550 5.7.1), Result.SoftReject ("soft reject" and
// "greylist") to a temporary one (451), Result.Junk ("add header",
// "rewrite subject") to delivery into the Junk folder; anything else,
// including an action this package does not know, to normal delivery.
// Learn sends a message to the controller's /learnspam or /learnham
// endpoint with the controller password.
//
// The contract for callers: an error from Check means rspamd gave no
// verdict (it is down, slower than Options.Timeout, answered with an HTTP
// error, or sent an oversized or malformed reply). It never means the
// message is bad: the caller accepts the message as if rspamd had said
// "no action" and logs the error, so mail is never lost or refused because
// rspamd failed. Errors from Learn are likewise only logged. A message
// rspamd has already learned the same way (its 208 reply) is not an error;
// a learn rspamd answers with 204 (it learned nothing, as when it has no
// Bayes backend) is.
//
// Every request is bounded in time by Options.Timeout (and the caller's
// context) and every reply in size (1 MiB), so a misbehaving rspamd costs
// a bounded amount of time and memory per message. Text from rspamd that
// reaches a header or an error is stripped of control characters.
package rspamd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds each request when Options.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// maxResponse bounds the size of a reply rspamd may send.
const maxResponse = 1 << 20

// ErrNoController is returned by Learn when Options.ControllerURL is empty.
var ErrNoController = errors.New("rspamd: no controller URL configured")

// Options configure a Client.
type Options struct {
	// URL is the base URL of rspamd's normal worker, such as
	// "http://127.0.0.1:11333"; Check posts to URL + "/checkv2".
	URL string
	// ControllerURL is the base URL of rspamd's controller worker, such
	// as "http://127.0.0.1:11334"; Learn posts to its /learnspam and
	// /learnham. Empty: Learn returns ErrNoController.
	ControllerURL string
	// Password is sent in the Password header of learn requests (the
	// controller's "enable_password"). Empty: no Password header.
	Password string
	// Timeout bounds each request, from connecting to reading the whole
	// reply. Zero means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient makes the requests. Nil means a private client that
	// ignores proxy environment variables; its Timeout is not used (the
	// per-request Timeout above is).
	HTTPClient *http.Client
	// Logger receives debug lines about each check. Nil discards them.
	Logger *slog.Logger
}

// Meta is the SMTP envelope of a message, sent to rspamd as the request
// headers of its protocol (IP, Helo, From, Rcpt, User, Hostname,
// Queue-Id). Zero fields are not sent, except From (see below). Control
// characters in the values are replaced by '?'.
type Meta struct {
	// IP is the SMTP client's address.
	IP netip.Addr
	// Helo is the name the client gave in HELO/EHLO.
	Helo string
	// From is the MAIL FROM address without angle brackets; "" is the
	// null reverse-path and is sent as "<>".
	From string
	// Rcpts are the RCPT TO addresses, one Rcpt header each.
	Rcpts []string
	// User is the authenticated user (submission), "" for none.
	User string
	// Hostname is the client's verified reverse DNS name, "" for none.
	Hostname string
	// QueueID identifies the message in logs on both sides.
	QueueID string
}

// Client talks to one rspamd. It is safe for concurrent use.
type Client struct {
	checkURL   string
	controller string
	password   string
	timeout    time.Duration
	hc         *http.Client
	log        *slog.Logger
}

// New returns a Client for the rspamd at o.URL. It fails only when a URL
// is not an absolute http or https URL.
func New(o Options) (*Client, error) {
	base, err := baseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("rspamd: url: %w", err)
	}
	c := &Client{checkURL: base + "/checkv2", password: o.Password, timeout: o.Timeout, hc: o.HTTPClient, log: o.Logger}
	if o.ControllerURL != "" {
		if c.controller, err = baseURL(o.ControllerURL); err != nil {
			return nil, fmt.Errorf("rspamd: controller url: %w", err)
		}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func baseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Check asks rspamd for its verdict on msg (the whole message, header and
// body, as received) with its envelope. The body is streamed (chunked when
// msg's length is unknown). See the package comment for what an error
// means to the caller.
func (c *Client) Check(ctx context.Context, msg io.Reader, meta Meta) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.checkURL, msg)
	if err != nil {
		return Result{}, fmt.Errorf("rspamd: check: %w", err)
	}
	setMeta(req.Header, meta)
	what := "rspamd: check"
	if meta.QueueID != "" {
		what += " " + sanitize(meta.QueueID, 64)
	}
	body, err := c.do(req)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", what, err)
	}
	res, err := parseResult(body)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", what, err)
	}
	c.log.Debug("rspamd check", "id", meta.QueueID, "action", res.Action, "score", res.Score, "required", res.Required)
	return res, nil
}

// setMeta writes meta as rspamd's request headers.
func setMeta(h http.Header, m Meta) {
	if m.IP.IsValid() {
		h.Set("IP", m.IP.Unmap().WithZone("").String())
	}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, clean(v))
		}
	}
	set("Helo", m.Helo)
	if m.From == "" {
		h.Set("From", "<>")
	} else {
		h.Set("From", clean(m.From))
	}
	for _, r := range m.Rcpts {
		h.Add("Rcpt", clean(r))
	}
	set("User", m.User)
	set("Hostname", m.Hostname)
	set("Queue-Id", m.QueueID)
}

// clean replaces control characters, which cannot travel in an HTTP
// header, by '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// Learn teaches rspamd's statistics (Bayes) that msg is spam or ham,
// through the controller. A message rspamd reports as already learned
// that way is not an error.
func (c *Client) Learn(ctx context.Context, spam bool, msg io.Reader) error {
	if c.controller == "" {
		return ErrNoController
	}
	path := "/learnham"
	if spam {
		path = "/learnspam"
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.controller+path, msg)
	if err != nil {
		return fmt.Errorf("rspamd: learn: %w", err)
	}
	if c.password != "" {
		req.Header.Set("Password", c.password)
	}
	body, err := c.do(req)
	if errors.Is(err, errAlreadyLearned) {
		c.log.Debug("rspamd learn: already learned", "path", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("rspamd: learn %s: %w", path, err)
	}
	var r struct {
		Success bool   `json:"success"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("rspamd: learn %s: bad reply: %w", path, err)
	}
	if !r.Success {
		return fmt.Errorf("rspamd: learn %s: not learned: %s", path, sanitize(r.Error, 200))
	}
	return nil
}

// errAlreadyLearned is do's error for rspamd's 208 reply to a learn
// request for a message already learned the same way.
var errAlreadyLearned = errors.New("already learned")

// do sends req and returns the body of a 200 reply, read up to
// maxResponse bytes; any other status is an error carrying rspamd's
// error text.
func (c *Client) do(req *http.Request) ([]byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("reply over %d bytes", maxResponse)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return body, nil
	case resp.StatusCode == http.StatusAlreadyReported:
		return nil, errAlreadyLearned
	case resp.StatusCode == http.StatusNoContent:
		// rspamd's learn reply when it learned nothing, as when no Bayes
		// backend (redis) is configured; a 204 has no body to say more.
		return nil, errors.New("http status 204: nothing learned (is a Bayes backend configured?)")
	}
	var e struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = ": " + sanitize(e.Error, 200)
	} else if t := bytes.TrimSpace(body); len(t) > 0 {
		msg = ": " + sanitize(string(t), 200)
	}
	return nil, fmt.Errorf("http status %d%s", resp.StatusCode, msg)
}

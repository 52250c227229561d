package webconf

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
)

// ClientConfig is Thunderbird's autoconfig document (clientConfig v1.1).
type ClientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider EmailProvider `xml:"emailProvider"`
}

// EmailProvider is the clientConfig's one provider.
type EmailProvider struct {
	ID               string         `xml:"id,attr"`
	Domains          []string       `xml:"domain"`
	DisplayName      string         `xml:"displayName"`
	DisplayShortName string         `xml:"displayShortName"`
	Incoming         []ServerConfig `xml:"incomingServer"`
	Outgoing         []ServerConfig `xml:"outgoingServer"`
}

// ServerConfig is one incomingServer or outgoingServer.
type ServerConfig struct {
	Type           string `xml:"type,attr"` // imap, pop3, smtp
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"` // SSL or STARTTLS
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

// endpoint is one advertised protocol port.
type endpoint struct {
	port     int
	implicit bool // implicit TLS; else STARTTLS
}

// endpoints lists p's ports, implicit TLS first, leaving out zeros.
func endpoints(p Ports) []endpoint {
	var out []endpoint
	if p.TLS != 0 {
		out = append(out, endpoint{p.TLS, true})
	}
	if p.STARTTLS != 0 {
		out = append(out, endpoint{p.STARTTLS, false})
	}
	return out
}

func (e endpoint) socketType() string {
	if e.implicit {
		return "SSL"
	}
	return "STARTTLS"
}

// ClientConfigFor builds the autoconfig document for domain.
func (s *Server) ClientConfigFor(domain string) ClientConfig {
	p := EmailProvider{ID: domain, DisplayName: domain, DisplayShortName: domain}
	p.Domains = append(p.Domains, s.opts.Domains...)
	add := func(list *[]ServerConfig, typ string, ports Ports) {
		for _, e := range endpoints(ports) {
			*list = append(*list, ServerConfig{
				Type: typ, Hostname: s.opts.Host, Port: e.port, SocketType: e.socketType(),
				Username: "%EMAILADDRESS%", Authentication: "password-cleartext",
			})
		}
	}
	add(&p.Incoming, "imap", s.opts.IMAP)
	add(&p.Incoming, "pop3", s.opts.POP3)
	add(&p.Outgoing, "smtp", s.opts.Submission)
	return ClientConfig{Version: "1.1", Provider: p}
}

func (s *Server) autoconfig(w http.ResponseWriter, r *http.Request) {
	domain := s.domainFor(r)
	if addr := r.URL.Query().Get("emailaddress"); addr != "" {
		var err error
		if _, domain, err = s.parseAddress(addr); err != nil {
			s.addressError(w, r, addr, err)
			return
		}
	}
	writeXML(w, "application/xml", s.ClientConfigFor(domain))
}

func writeXML(w http.ResponseWriter, contentType string, v any) {
	b, err := xml.MarshalIndent(v, "", "  ")
	if err != nil { // our own structs: cannot happen
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType+"; charset=utf-8")
	io.WriteString(w, xml.Header)
	w.Write(b)
	io.WriteString(w, "\n")
}

// The autodiscover namespaces.
const (
	NSAutodiscover = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	NSOutlook      = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

// AutodiscoverResponse is the POX answer, in the outlook response schema.
type AutodiscoverResponse struct {
	XMLName  xml.Name        `xml:"Autodiscover"`
	Xmlns    string          `xml:"xmlns,attr"` // NSAutodiscover
	Response OutlookResponse `xml:"Response"`
}

// OutlookResponse is the Response element of the outlook schema.
type OutlookResponse struct {
	XMLName xml.Name `xml:"Response"`
	Xmlns   string   `xml:"xmlns,attr"` // NSOutlook; its children inherit it
	Account Account  `xml:"Account"`
}

// Account is the account's settings.
type Account struct {
	AccountType string     `xml:"AccountType"`
	Action      string     `xml:"Action"`
	Protocols   []Protocol `xml:"Protocol"`
}

// Protocol is one server: IMAP, POP3 or SMTP.
type Protocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	LoginName      string `xml:"LoginName,omitempty"`
	DomainRequired string `xml:"DomainRequired"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption"`
	AuthRequired   string `xml:"AuthRequired"`
}

// AutodiscoverFor builds the POX answer for addr ("" leaves LoginName
// out). Each protocol gets one block, on its implicit-TLS port when there
// is one (Encryption SSL), else on its STARTTLS port (Encryption TLS).
func (s *Server) AutodiscoverFor(addr string) AutodiscoverResponse {
	acct := Account{AccountType: "email", Action: "settings"}
	for _, p := range []struct {
		typ   string
		ports Ports
	}{{"IMAP", s.opts.IMAP}, {"POP3", s.opts.POP3}, {"SMTP", s.opts.Submission}} {
		eps := endpoints(p.ports)
		if len(eps) == 0 {
			continue
		}
		e := eps[0]
		enc := "TLS"
		if e.implicit {
			enc = "SSL"
		}
		acct.Protocols = append(acct.Protocols, Protocol{
			Type: p.typ, Server: s.opts.Host, Port: e.port, LoginName: addr,
			DomainRequired: "off", SPA: "off", SSL: "on", Encryption: enc, AuthRequired: "on",
		})
	}
	return AutodiscoverResponse{Xmlns: NSAutodiscover, Response: OutlookResponse{Xmlns: NSOutlook, Account: acct}}
}

// autodiscoverRequest is the POX request; namespaces are not checked.
type autodiscoverRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Email   string   `xml:"Request>EMailAddress"`
	Schema  string   `xml:"Request>AcceptableResponseSchema"`
}

func (s *Server) autodiscover(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("Email")
	if r.Method == http.MethodPost {
		var req autodiscoverRequest
		err := xml.NewDecoder(r.Body).Decode(&req)
		if err != nil || req.Email == "" {
			s.log.Debug("http: bad autodiscover request", "remote", r.RemoteAddr, "err", err)
			status := http.StatusBadRequest
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, "bad autodiscover request", status)
			return
		}
		// Only the outlook schema is served: an ActiveSync client (iOS and
		// Android "Exchange" accounts ask for the mobilesync schema) gets
		// a status that makes it try elsewhere or ask the user, not a
		// document it would misread.
		if req.Schema != "" && strings.TrimSpace(req.Schema) != NSOutlook {
			s.log.Debug("http: autodiscover schema not served", "remote", r.RemoteAddr, "schema", req.Schema)
			http.Error(w, "only the outlook response schema (2006a) is served", http.StatusNotFound)
			return
		}
		addr = req.Email
	}
	if addr != "" {
		var err error
		if addr, _, err = s.parseAddress(addr); err != nil {
			s.addressError(w, r, addr, err)
			return
		}
	}
	writeXML(w, "application/xml", s.AutodiscoverFor(addr))
}

// AutodiscoverJSON is the answer of the JSON form.
type AutodiscoverJSON struct {
	Protocol string `json:"Protocol"`
	URL      string `json:"Url"`
}

// autodiscoverJSONError is Microsoft's error document of the JSON form.
type autodiscoverJSONError struct {
	ErrorCode    string `json:"ErrorCode"`
	ErrorMessage string `json:"ErrorMessage"`
}

func (s *Server) autodiscoverJSON(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr := q.Get("Email")
	const prefix = "/autodiscover/autodiscover.json/v1.0/"
	// The route matched the path in any case; the address is cut from the
	// path itself only where its bytes are the prefix (case folding may
	// change lengths: "İ" is two bytes, "i" one).
	if p := r.URL.Path; len(p) > len("/autodiscover/autodiscover.json/") {
		if len(p) < len(prefix) || !strings.EqualFold(p[:len(prefix)], prefix) {
			http.NotFound(w, r)
			return
		}
		addr = p[len(prefix):]
	}
	proto := q.Get("Protocol")
	if proto == "" {
		proto = "AutodiscoverV1"
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if !strings.EqualFold(proto, "AutodiscoverV1") {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(autodiscoverJSONError{
			ErrorCode:    "InvalidProtocol",
			ErrorMessage: "The given protocol value '" + proto + "' is invalid. Supported values are 'AutodiscoverV1'",
		})
		return
	}
	if addr != "" {
		if _, _, err := s.parseAddress(addr); err != nil {
			w.Header().Del("Content-Type")
			s.addressError(w, r, addr, err)
			return
		}
	}
	// The URL names the host alone, as Outlook expects on 443 (the
	// production port); a test setup on another port is not reachable by
	// name anyway.
	json.NewEncoder(w).Encode(AutodiscoverJSON{Protocol: "AutodiscoverV1", URL: "https://" + s.opts.Host + "/autodiscover/autodiscover.xml"})
}

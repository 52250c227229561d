package smtpd

import (
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// loginMech is the name of the LOGIN mechanism: not in any RFC (only the
// expired draft-murchison-sasl-login), but Outlook and many devices use it.
const loginMech = "LOGIN"

// maxLoginField bounds the user name and the password a client may send.
const maxLoginField = 1024

// errLoginTooLong is RFC 4954's "authentication exchange line too long".
var errLoginTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Authentication exchange line is too long"}

// loginServer is the server side of SASL LOGIN, which go-sasl lacks:
//
//	C: AUTH LOGIN                 C: AUTH LOGIN dXNlcg==   (initial response = user name)
//	S: 334 VXNlcm5hbWU6           S: 334 UGFzc3dvcmQ6
//	C: dXNlcg==                   C: cGFzcw==
//	S: 334 UGFzc3dvcmQ6           S: 235 (or 535)
//	C: cGFzcw==
//	S: 235 (or 535)
//
// go-smtp does the base64; Next sees decoded bytes, and nil only as "no
// initial response".
type loginServer struct {
	authenticate func(username, password string) error
	state        int // loginAskUser, loginAskPass or loginDone
	asked        bool
	username     string
}

const (
	loginAskUser = iota
	loginAskPass
	loginDone
)

func newLoginServer(authenticate func(username, password string) error) sasl.Server {
	return &loginServer{authenticate: authenticate}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case loginAskUser:
		if response == nil && !l.asked {
			l.asked = true
			return []byte("Username:"), false, nil
		}
		if len(response) > maxLoginField {
			l.state = loginDone
			return nil, true, errLoginTooLong
		}
		l.username = string(response)
		l.state = loginAskPass
		return []byte("Password:"), false, nil
	case loginAskPass:
		l.state = loginDone
		if len(response) > maxLoginField {
			return nil, true, errLoginTooLong
		}
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

package rdsauth

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
)

// LDAPServer is the smallest LDAP server PostgreSQL's ldap authentication
// needs in simple-bind mode: it answers each BindRequest with success or
// invalidCredentials, as its check function says, and closes on
// UnbindRequest. PostgreSQL opens one LDAP connection per login and sends
// the password the client gave, so with [Verifier.Check] as the check
// function the server accepts exactly the tokens RDS would, and a refused
// one is answered by PostgreSQL with FATAL 28000 "LDAP authentication
// failed for user ...", the SQLSTATE RDS answers ("PAM authentication
// failed").
//
// It listens on 127.0.0.1 only.
type LDAPServer struct {
	ln    net.Listener
	check func(user, password string) error

	binds, refusals atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	lastMu  sync.Mutex
	lastErr error // the last refusal's reason
}

// The DN PostgreSQL binds with is ldapPrefix + user + ldapSuffix.
const (
	ldapPrefix = "cn="
	ldapSuffix = ",dc=rotating,dc=test"
)

// StartLDAP starts an LDAPServer on a free loopback port. check is called
// for each bind with the PostgreSQL user name and the password; nil
// accepts the login. Close stops it.
func StartLDAP(check func(user, password string) error) (*LDAPServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rdsauth: listen: %w", err)
	}
	s := &LDAPServer{ln: ln, check: check, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Port returns the port the server listens on.
func (s *LDAPServer) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// HBAMethod returns the pg_hba.conf method and options that make
// PostgreSQL ask this server: `ldap ldapserver=127.0.0.1 ldapport=...`.
func (s *LDAPServer) HBAMethod() string {
	return fmt.Sprintf(`ldap ldapserver=127.0.0.1 ldapport=%d ldapprefix="%s" ldapsuffix="%s"`, s.Port(), ldapPrefix, ldapSuffix)
}

// Binds counts the bind requests answered; Refusals those refused.
func (s *LDAPServer) Binds() int64 { return s.binds.Load() }

// Refusals counts the bind requests refused.
func (s *LDAPServer) Refusals() int64 { return s.refusals.Load() }

// LastRefusal returns why the last refused bind was refused, or nil.
func (s *LDAPServer) LastRefusal() error {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	return s.lastErr
}

// Close stops the server, closes its connections and waits for their
// goroutines.
func (s *LDAPServer) Close() {
	s.mu.Lock()
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *LDAPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// LDAP result codes (RFC 4511 4.1.9).
const (
	resultSuccess            = 0
	resultProtocolError      = 2
	resultInvalidCredentials = 49
)

// BER tags of the LDAP messages used here (RFC 4511 4.2, 4.3).
const (
	tagSequence     = 0x30
	tagInteger      = 0x02
	tagOctetString  = 0x04
	tagEnumerated   = 0x0a
	tagBindRequest  = 0x60 // [APPLICATION 0], constructed
	tagBindResponse = 0x61 // [APPLICATION 1], constructed
	tagUnbind       = 0x42 // [APPLICATION 2], primitive
	tagSimpleAuth   = 0x80 // [0], primitive
)

func (s *LDAPServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		tag, msg, err := readTLV(r)
		if err != nil || tag != tagSequence {
			return
		}
		id, rest, err := next(msg, tagInteger)
		if err != nil {
			return
		}
		opTag, op, _, err := nextAny(rest)
		if err != nil {
			return
		}
		switch opTag {
		case tagUnbind:
			return
		case tagBindRequest:
			code, diag := s.bind(op)
			if _, err := c.Write(tlv(tagSequence, tlv(tagInteger, id), tlv(tagBindResponse,
				tlv(tagEnumerated, []byte{code}), tlv(tagOctetString, nil), tlv(tagOctetString, []byte(diag))))); err != nil {
				return
			}
		default:
			return // PostgreSQL sends nothing else in simple-bind mode
		}
	}
}

// bind answers one BindRequest: version, name, simple password.
func (s *LDAPServer) bind(op []byte) (code byte, diagnostic string) {
	s.binds.Add(1)
	_, rest, err := next(op, tagInteger) // version
	if err != nil {
		return resultProtocolError, "malformed bind request"
	}
	dn, rest, err := next(rest, tagOctetString)
	if err != nil {
		return resultProtocolError, "malformed bind request"
	}
	password, _, err := next(rest, tagSimpleAuth)
	if err != nil {
		return resultProtocolError, "only simple binds are supported"
	}
	user, ok := strings.CutPrefix(string(dn), ldapPrefix)
	if ok {
		user, ok = strings.CutSuffix(user, ldapSuffix)
	}
	if !ok {
		err = fmt.Errorf("rdsauth: bind DN is not %s<user>%s", ldapPrefix, ldapSuffix)
	} else {
		err = s.check(user, string(password))
	}
	if err != nil {
		s.refusals.Add(1)
		s.lastMu.Lock()
		s.lastErr = err
		s.lastMu.Unlock()
		// The diagnostic goes to PostgreSQL's server log, not to the client;
		// it names the reason, never the token.
		return resultInvalidCredentials, err.Error()
	}
	return resultSuccess, ""
}

// maxMessage bounds an LDAP message (a token with a session token is
// about 2 KiB).
const maxMessage = 1 << 20

var errBER = errors.New("rdsauth: malformed BER")

// readTLV reads one BER element with a definite length from r.
func readTLV(r *bufio.Reader) (tag byte, value []byte, err error) {
	if tag, err = r.ReadByte(); err != nil {
		return 0, nil, err
	}
	n, err := readLength(r)
	if err != nil {
		return 0, nil, err
	}
	value = make([]byte, n)
	if _, err := io.ReadFull(r, value); err != nil {
		return 0, nil, err
	}
	return tag, value, nil
}

func readLength(r io.ByteReader) (int, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	if b < 0x80 {
		return int(b), nil
	}
	k := int(b & 0x7f)
	if k == 0 || k > 4 { // indefinite lengths are not allowed in LDAP
		return 0, errBER
	}
	n := 0
	for range k {
		if b, err = r.ReadByte(); err != nil {
			return 0, err
		}
		n = n<<8 | int(b)
	}
	if n > maxMessage {
		return 0, errBER
	}
	return n, nil
}

// nextAny splits the first element off buf.
func nextAny(buf []byte) (tag byte, value, rest []byte, err error) {
	if len(buf) < 2 {
		return 0, nil, nil, errBER
	}
	r := &sliceReader{b: buf[1:]}
	n, err := readLength(r)
	if err != nil || n > len(r.b) {
		return 0, nil, nil, errBER
	}
	return buf[0], r.b[:n], r.b[n:], nil
}

// next splits the first element off buf, which must have tag want.
func next(buf []byte, want byte) (value, rest []byte, err error) {
	tag, value, rest, err := nextAny(buf)
	if err == nil && tag != want {
		err = errBER
	}
	return value, rest, err
}

type sliceReader struct{ b []byte }

func (r *sliceReader) ReadByte() (byte, error) {
	if len(r.b) == 0 {
		return 0, errBER
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}

// tlv encodes one BER element whose content is the concatenation of
// parts.
func tlv(tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Route makes srv authenticate role through s: it puts a line for role at
// the top of srv's pg_hba.conf (hostssl for a server started with TLS,
// host otherwise), reloads the configuration and waits until a login as
// role is answered through s, so that the next login is checked by s's
// check function. The waiting logins use a password that is not a token;
// they count in Binds and Refusals.
func (s *LDAPServer) Route(ctx context.Context, srv *pgserver.Server, role string) error {
	path := filepath.Join(srv.Dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("rdsauth: %w", err)
	}
	conn := "host"
	if srv.RootCertPath() != "" {
		conn = "hostssl"
	}
	lines := []string{fmt.Sprintf("%s all %s 127.0.0.1/32 %s", conn, role, s.HBAMethod())}
	lines = append(lines, strings.Split(strings.TrimRight(string(old), "\n"), "\n")...)
	if err := srv.WriteHBA(lines); err != nil {
		return err
	}
	if err := srv.ReloadConf(ctx); err != nil {
		return err
	}
	probe, err := pq.NewConnector(srv.DSN(role, "rdsauth-route-probe", "postgres"))
	if err != nil {
		return fmt.Errorf("rdsauth: %w", err)
	}
	db := sql.OpenDB(probe)
	defer db.Close()
	for {
		before := s.Binds()
		err := db.PingContext(ctx)
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Code == "28000" && s.Binds() > before {
			return nil
		}
		if testkit.Sleep(ctx, 20*time.Millisecond) != nil {
			return fmt.Errorf("rdsauth: pg_hba.conf's ldap line for %s did not take effect (last login: %v): %w", role, err, ctx.Err())
		}
	}
}

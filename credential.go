package rotating

import (
	"context"
	"time"

	"github.com/pgrotate/rotating/secrets"
)

// Login is a credential that Credential handed out for a login the caller
// makes itself, outside Connect: a connection pool's own connect hook,
// such as pgxpool's BeforeConnect (see pgxv5.ConfigurePool). Report tells
// the Connector how that login ended, so that a rejection reaches the
// model exactly as a rejected Connect does.
//
// A Login holds the secret: it must go only into the configuration of the
// login it was handed out for. Printing a Login (%v, %+v, slog) shows the
// credential's redacted form, as for secrets.Credential.
type Login struct {
	// Credential is the credential to log in with, as the Connector's own
	// logins apply it: its Username (if set) and Password replace the
	// configuration's; Host, Port and Database are set only where they
	// apply to the login (the DSN leaves them unset, or
	// WithEndpointFromSecret).
	Credential secrets.Credential
	// RetireAt is when sessions logged in with it are to stop being used
	// (WithSessionMargin before Credential.SessionsEnd), or zero when its
	// sessions do not end.
	RetireAt time.Time

	c *Connector
	e *entry
}

// Credential returns the credential that new logins use now, for a login
// the caller makes itself (a pool that is not database/sql's). It is what
// Connect would dial: with a credential known to work it is one atomic
// load and no store call. Otherwise it runs Connect's slow path, shared
// with every Connect and Credential caller (one store call per step, one
// caller probing a credential nobody has logged in with yet), except that
// a credential known to work is handed back rather than dialed: the
// caller's own login is the one that matters. A probe is a login through
// the Connector's driver, closed once it has told whether the credential
// works. Errors are Connect's: an *AuthError once the rotation wait or ctx
// ends with every credential rejected, a *FetchError, ErrClosed.
//
// The caller must Report how its login ended, at least when the database
// rejected it: the Connector knows of a rejection only through Report,
// and goes on handing out a credential it believes works until then.
//
// Credential hands out the secret: it leaves the Connector, which cannot
// keep it out of whatever the caller puts it in (a pool's configuration
// copy, say). Keep it in the login's configuration only, never in logs or
// errors.
func (c *Connector) Credential(ctx context.Context) (Login, error) {
	if e := c.use.Load(); e != nil && (e.sessions == nil || e.usableAt(time.Now())) {
		return c.loginFor(e), nil
	}
	return c.credentialSlow(ctx)
}

// Report records how the caller's login with l ended: err is the driver's
// error, or nil. A rejection (an error with one of WithAuthErrorCodes'
// SQLSTATEs) is recorded as a rejected Connect's is: no later Credential
// or Connect hands out l's credential before it has been tried again, and
// the next one runs the rotation's slow path. A success, or any other
// error, changes nothing: l was known to work when it was handed out, and
// a success that ends after a rejection recorded meanwhile is history
// (its password check may have come before the rotation). Report on a zero
// Login does nothing.
func (l Login) Report(err error) {
	if l.c == nil || err == nil || !hasSQLState(err, l.c.cfg.authCodes) {
		return
	}
	l.c.report(l.e, false, loginDenied, err)
}

func (c *Connector) loginFor(e *entry) Login {
	l := Login{Credential: c.endpoint.applies(e.cred, c.cfg.endpointFromSecret), c: c, e: e}
	if e.sessions != nil {
		l.RetireAt = e.sessions.retireTime()
	}
	return l
}

// credentialSlow is Connect's slow path for Credential: the same
// decisions, waits and bounds, but a credential known to work is returned
// instead of dialed, and a probe's connection is closed once it has
// answered.
func (c *Connector) credentialSlow(ctx context.Context) (Login, error) {
	_, e, err := c.slowPath(ctx, nil, nil, true)
	if err != nil {
		return Login{}, err
	}
	return c.loginFor(e), nil
}

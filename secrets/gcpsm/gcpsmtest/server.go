package gcpsmtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pgrotate/rotating/internal/loopback"
)

// Method names, as they end the gRPC method's full name
// ("/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion").
// [Server.InjectFault] and [Server.Calls] take them.
const (
	MethodCreateSecret         = "CreateSecret"
	MethodGetSecret            = "GetSecret"
	MethodDeleteSecret         = "DeleteSecret"
	MethodAddSecretVersion     = "AddSecretVersion"
	MethodGetSecretVersion     = "GetSecretVersion"
	MethodAccessSecretVersion  = "AccessSecretVersion"
	MethodListSecretVersions   = "ListSecretVersions"
	MethodDisableSecretVersion = "DisableSecretVersion"
	MethodEnableSecretVersion  = "EnableSecretVersion"
	MethodDestroySecretVersion = "DestroySecretVersion"

	// AllMethods makes [Server.InjectFault] apply to every method that has
	// no fault of its own.
	AllMethods = "*"
)

// servicePrefix starts the full name of every method of the service.
const servicePrefix = "/google.cloud.secretmanager.v1.SecretManagerService/"

// Option configures a [Server].
type Option func(*config)

type config struct {
	logger *slog.Logger
}

// WithLogger makes the server log each request at Debug level: the method,
// the resource name and the status code it answered. It never logs
// payloads. The default is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Fault is a failure that [Server.InjectFault] makes a method produce. The
// parts combine in this order: Latency, then Hang, then either the error
// Code or the method's normal answer (with CorruptChecksum applied).
type Fault struct {
	// Latency delays the answer; the method runs after the delay. A client
	// that gives up first gets its own deadline or cancellation, as from a
	// slow service.
	Latency time.Duration

	// Hang blocks the request until the client gives up or the server goes
	// down or is closed.
	Hang bool

	// Code, when not codes.OK, is the status to answer with, such as
	// codes.Unavailable, codes.PermissionDenied or codes.ResourceExhausted.
	// The method does not run.
	Code codes.Code

	// Message is the status message; empty means one like the service's.
	Message string

	// CorruptChecksum makes AccessSecretVersion answer with a DataCrc32C
	// that does not match the data, as if the payload had been damaged on
	// the way. Other methods ignore it.
	CorruptChecksum bool

	// Count limits the fault to the next Count calls; zero means every call
	// until [Server.ClearFaults].
	Count int
}

// Server is an in-memory Secret Manager service (the v1 gRPC API) on a
// loopback port. All methods are safe for concurrent use.
type Server struct {
	cfg    config
	closed chan struct{} // closed by Close; ends hanging and delayed requests

	// sw serves a gRPC server on the address fixed by Start, kept across
	// Down and Up. faults and calls have locks of their own.
	sw     *loopback.Switch
	faults *loopback.Faults[string, Fault] // by method name or AllMethods
	calls  loopback.Calls[string]          // by method name

	// mu guards everything below. It is never held while a request waits
	// (Latency, Hang) or while the gRPC server stops.
	mu      sync.Mutex
	isClose bool
	clients []*secretmanager.Client
	store   store
}

// NewServer returns a Server with no secrets. It does not listen: call
// [Server.Start]. Call [Server.Close] when done.
func NewServer(opts ...Option) *Server {
	s := &Server{
		closed: make(chan struct{}),
		store:  newStore(),
		faults: loopback.NewFaults[string, Fault](AllMethods),
	}
	s.sw = loopback.NewSwitch(s.serve)
	for _, opt := range opts {
		opt(&s.cfg)
	}
	if s.cfg.logger == nil {
		s.cfg.logger = slog.New(slog.DiscardHandler)
	}
	return s
}

// Start serves s on a random port of 127.0.0.1 and returns s. It panics if
// s is already started or closed, or if it cannot listen.
func (s *Server) Start() *Server {
	switch err := s.sw.Start(context.Background(), "127.0.0.1:0"); {
	case errors.Is(err, loopback.ErrClosed):
		panic("gcpsmtest: Start after Close")
	case errors.Is(err, loopback.ErrStarted):
		panic("gcpsmtest: Server already started")
	case err != nil:
		panic(fmt.Sprintf("gcpsmtest: listen: %v", err))
	}
	return s
}

// serve runs a new gRPC server on ln, for Start and Up.
func (s *Server) serve(ln net.Listener) (stop func()) {
	gs := grpc.NewServer(grpc.UnaryInterceptor(s.intercept))
	secretmanagerpb.RegisterSecretManagerServiceServer(gs, &service{s: s})
	return loopback.Go(ln, gs.Serve, gs.Stop)
}

// Addr returns the server's address, "127.0.0.1:PORT", or "" before
// [Server.Start].
func (s *Server) Addr() string { return s.sw.Addr() }

// ClientOptions returns the options that point the real client at s:
// option.WithEndpoint([Server.Addr]), option.WithoutAuthentication() and an
// insecure (plain-text) gRPC transport, for
// secretmanager.NewClient(ctx, srv.ClientOptions()...). It panics before
// [Server.Start]: a client without the endpoint would go to Google.
func (s *Server) ClientOptions() []option.ClientOption {
	addr := s.Addr()
	if addr == "" {
		panic("gcpsmtest: ClientOptions called before Start")
	}
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// Client returns a new Secret Manager client for s, built with
// [Server.ClientOptions] followed by opts; everything else, the retry
// policy included, is the library's default. [Server.Close] closes it, so
// callers need not (closing it first is harmless).
func (s *Server) Client(ctx context.Context, opts ...option.ClientOption) (*secretmanager.Client, error) {
	c, err := secretmanager.NewClient(ctx, append(s.ClientOptions(), opts...)...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClose {
		_ = c.Close()
		return nil, errors.New("gcpsmtest: Client after Close")
	}
	s.clients = append(s.clients, c)
	return c, nil
}

// Down makes the service unreachable, as a network partition or an outage
// would: the listener is closed and open connections are dropped (requests
// in flight fail), so that clients get codes.Unavailable until [Server.Up].
// The secrets are kept. Down on a server that is down does nothing.
func (s *Server) Down() { s.sw.Down() }

// Up serves again on the address s had, after [Server.Down]. Clients
// reconnect by themselves (gRPC retries a lost connection with a backoff
// that starts at 1 s). It returns an error if the address cannot be
// listened on again or s is closed; Up on a server that is up does nothing.
func (s *Server) Up() error {
	switch err := s.sw.Up(context.Background()); {
	case errors.Is(err, loopback.ErrClosed):
		return errors.New("gcpsmtest: Up after Close")
	case errors.Is(err, loopback.ErrNotStarted):
		return errors.New("gcpsmtest: Up before Start")
	case err != nil:
		return fmt.Errorf("gcpsmtest: %w", err)
	}
	return nil
}

// Close closes the clients made by [Server.Client], ends hanging and
// delayed requests and stops the server, and waits for it. Close is
// idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.isClose {
		s.mu.Unlock()
		return
	}
	s.isClose = true
	close(s.closed)
	clients := s.clients
	s.clients = nil
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close() // an error only says the caller closed it already
	}
	s.sw.Close()
}

// InjectFault makes method (a Method* constant, or [AllMethods] for every
// method without a fault of its own) fail as f says, replacing any fault
// it had.
func (s *Server) InjectFault(method string, f Fault) {
	s.faults.Set(method, f, f.Count)
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() { s.faults.Clear() }

// Calls returns how many requests for method (a Method* constant) reached
// the server since it started or since [Server.ResetCalls], faulted ones
// included, each retry of the client counted apart.
func (s *Server) Calls(method string) int64 { return s.calls.Of(method) }

// TotalCalls returns how many requests reached the server, for every
// method, since it started or since [Server.ResetCalls].
func (s *Server) TotalCalls() int64 { return s.calls.Total() }

// ResetCalls sets every call count to zero.
func (s *Server) ResetCalls() { s.calls.Reset() }

// faultKey carries the fault a request met to the service method, for the
// parts that shape the answer (CorruptChecksum).
type faultKey struct{}

// intercept counts each request and applies its fault before the service
// method runs.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	method := strings.TrimPrefix(info.FullMethod, servicePrefix)
	defer func() {
		s.cfg.logger.LogAttrs(ctx, slog.LevelDebug, "gcpsmtest: request",
			slog.String("method", method), slog.String("resource", resourceOf(req)),
			slog.String("code", status.Code(err).String()))
	}()
	s.calls.Add(method)
	f, faulty := s.faults.Take(method)
	if !faulty {
		return handler(ctx, req)
	}
	if !loopback.Wait(ctx, s.closed, f.Latency, f.Hang) {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Error(codes.Unavailable, "gcpsmtest: server closed")
	}
	if f.Code != codes.OK {
		msg := f.Message
		if msg == "" {
			msg = defaultMessage(f.Code, method, resourceOf(req))
		}
		return nil, status.Error(f.Code, msg)
	}
	return handler(context.WithValue(ctx, faultKey{}, f), req)
}

// defaultMessage is a status message like the service's for code.
func defaultMessage(code codes.Code, method, resource string) string {
	switch code {
	case codes.PermissionDenied:
		return fmt.Sprintf("Permission 'secretmanager.versions.access' denied for resource '%s' (or it may not exist).", resource)
	case codes.ResourceExhausted:
		return "Quota exceeded for quota metric 'Access requests' and limit 'Access requests per minute per project' of service 'secretmanager.googleapis.com'."
	case codes.Unavailable:
		return "The service is currently unavailable."
	case codes.Unauthenticated:
		return "Request had invalid authentication credentials."
	default:
		return fmt.Sprintf("gcpsmtest: injected %s fault on %s", code, method)
	}
}

// resourceOf returns the resource name a request is about (its name, or
// its parent), for logs and messages.
func resourceOf(req any) string {
	switch r := req.(type) {
	case interface{ GetName() string }:
		return r.GetName()
	case interface{ GetParent() string }:
		return r.GetParent()
	}
	return ""
}

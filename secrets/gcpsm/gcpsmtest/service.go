package gcpsmtest

import (
	"context"
	"iter"
	"strings"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// service implements the generated gRPC server interface over the
// Server's store; the methods it does not implement answer
// codes.Unimplemented.
type service struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer
	s *Server
}

var _ secretmanagerpb.SecretManagerServiceServer = (*service)(nil)

func (sv *service) CreateSecret(_ context.Context, req *secretmanagerpb.CreateSecretRequest) (*secretmanagerpb.Secret, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	return sv.s.store.createSecret(req.GetParent(), req.GetSecretId(), req.GetSecret(), time.Now())
}

func (sv *service) GetSecret(_ context.Context, req *secretmanagerpb.GetSecretRequest) (*secretmanagerpb.Secret, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	sec, err := sv.s.store.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.Clone(sec.meta).(*secretmanagerpb.Secret), nil
}

func (sv *service) DeleteSecret(_ context.Context, req *secretmanagerpb.DeleteSecretRequest) (*emptypb.Empty, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	sec, err := sv.s.store.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetEtag() != "" && req.GetEtag() != sec.meta.Etag {
		return nil, status.Errorf(codes.Aborted, "The etag provided in the request does not match the etag of Secret [%s].", sec.meta.Name)
	}
	delete(sv.s.store.secrets, sec.meta.Name)
	return &emptypb.Empty{}, nil
}

func (sv *service) AddSecretVersion(_ context.Context, req *secretmanagerpb.AddSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	return sv.s.store.addVersion(req.GetParent(), req.GetPayload(), time.Now())
}

func (sv *service) GetSecretVersion(_ context.Context, req *secretmanagerpb.GetSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	sec, v, err := sv.s.store.lookupVersion(req.GetName())
	if err != nil {
		return nil, err
	}
	return sec.proto(v), nil
}

func (sv *service) AccessSecretVersion(ctx context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	sv.s.mu.Lock()
	resp, err := sv.s.store.access(req.GetName())
	sv.s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if f, ok := ctx.Value(faultKey{}).(Fault); ok && f.CorruptChecksum {
		*resp.Payload.DataCrc32C ^= 0x5a5a
	}
	return resp, nil
}

func (sv *service) ListSecretVersions(_ context.Context, req *secretmanagerpb.ListSecretVersionsRequest) (*secretmanagerpb.ListSecretVersionsResponse, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	return sv.s.store.listVersions(req.GetParent(), req.GetPageSize(), req.GetPageToken(), req.GetFilter())
}

func (sv *service) DisableSecretVersion(_ context.Context, req *secretmanagerpb.DisableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	return sv.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DISABLED)
}

func (sv *service) EnableSecretVersion(_ context.Context, req *secretmanagerpb.EnableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	return sv.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_ENABLED)
}

func (sv *service) DestroySecretVersion(_ context.Context, req *secretmanagerpb.DestroySecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	return sv.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DESTROYED)
}

func (sv *service) setState(name, etagWanted string, to secretmanagerpb.SecretVersion_State) (*secretmanagerpb.SecretVersion, error) {
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	if etagWanted != "" {
		sec, v, err := sv.s.store.lookupVersion(name)
		if err != nil {
			return nil, err
		}
		if etagWanted != etag(v) {
			return nil, status.Errorf(codes.Aborted, "The etag provided in the request does not match the etag of Secret Version [%s].", sec.versionName(v))
		}
	}
	return sv.s.store.setState(name, to, time.Now())
}

// The test hooks: the same operations without a client. They panic on a
// name that the service would refuse, since that is a bug in the test.

// CreateSecret creates the secret name ("projects/PROJECT/secrets/SECRET")
// with automatic replication, as CreateSecret would, and returns its
// canonical name (with the project number). It panics if name is invalid
// or the secret exists.
func (s *Server) CreateSecret(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	canon, err := s.store.secretName(name)
	if err != nil {
		panic("gcpsmtest: CreateSecret: " + status.Convert(err).Message())
	}
	i := strings.LastIndex(canon, "/secrets/")
	meta := &secretmanagerpb.Secret{Replication: &secretmanagerpb.Replication{
		Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}},
	}}
	sec, err := s.store.createSecret(canon[:i], canon[i+len("/secrets/"):], meta, time.Now())
	if err != nil {
		panic("gcpsmtest: CreateSecret: " + status.Convert(err).Message())
	}
	return sec.Name
}

// AddVersion adds a version holding data to the secret name, as
// AddSecretVersion would, and returns its number. It panics if the secret
// does not exist or data is larger than [MaxPayload].
func (s *Server) AddVersion(name string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.store.addVersion(name, &secretmanagerpb.SecretPayload{Data: data}, time.Now())
	if err != nil {
		panic("gcpsmtest: AddVersion: " + status.Convert(err).Message())
	}
	return v.GetName()[strings.LastIndex(v.GetName(), "/")+1:]
}

// DisableVersion disables a version ("projects/P/secrets/S/versions/N",
// or ".../latest"), as DisableSecretVersion would. It returns the
// service's error for a missing or destroyed version.
func (s *Server) DisableVersion(name string) error {
	return s.setState(name, secretmanagerpb.SecretVersion_DISABLED)
}

// EnableVersion enables a disabled version, as EnableSecretVersion would.
func (s *Server) EnableVersion(name string) error {
	return s.setState(name, secretmanagerpb.SecretVersion_ENABLED)
}

// DestroyVersion destroys a version, as DestroySecretVersion would: its
// payload is gone for good and it can no longer be enabled.
func (s *Server) DestroyVersion(name string) error {
	return s.setState(name, secretmanagerpb.SecretVersion_DESTROYED)
}

func (s *Server) setState(name string, to secretmanagerpb.SecretVersion_State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.store.setState(name, to, time.Now())
	return err
}

// Versions lists the versions of the secret name, oldest first, without
// their payloads; nothing if the secret does not exist.
func (s *Server) Versions(name string) iter.Seq[VersionInfo] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.versions(name)
}

// ProjectNumber returns the number the server gives the project id (a
// number is its own), as the service names resources with project numbers
// in its answers whatever the request used.
func (s *Server) ProjectNumber(project string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.projectNumber(project)
}

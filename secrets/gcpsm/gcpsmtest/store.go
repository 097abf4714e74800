package gcpsmtest

import (
	"fmt"
	"hash/crc32"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxPayload is the largest payload the service accepts: 64 KiB.
const MaxPayload = 64 << 10

// firstProjectNumber is the number given to the first project id the
// server sees; the next ones count up from it.
const firstProjectNumber = 100000000001

// store is the server's state. Its methods are called with Server.mu held
// and return errors that are gRPC statuses, with messages like the
// service's. No message contains payload data.
type store struct {
	projects map[string]string // project id -> project number
	next     int64             // the next project number to give
	secrets  map[string]*secret
}

// secret is one secret; name is canonical (with the project number).
type secret struct {
	meta     *secretmanagerpb.Secret // Name canonical
	versions []*version              // versions[i] is number i+1
}

type version struct {
	number    int64
	state     secretmanagerpb.SecretVersion_State
	data      []byte // nil once destroyed
	created   time.Time
	destroyed time.Time
	clientCRC bool // the client sent a checksum with the payload
}

func newStore() store {
	return store{projects: make(map[string]string), next: firstProjectNumber, secrets: make(map[string]*secret)}
}

// projectNumber returns the number of project (an id or a number), giving
// an id a number the first time it is seen.
func (st *store) projectNumber(project string) string {
	if isDigits(project) {
		return project
	}
	n, ok := st.projects[project]
	if !ok {
		n = strconv.FormatInt(st.next, 10)
		st.next++
		st.projects[project] = n
	}
	return n
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validSecretID reports whether id is a valid secret id: 1 to 255 ASCII
// letters, digits, hyphens and underscores.
func validSecretID(id string) bool {
	if len(id) < 1 || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parent parses "projects/P" or "projects/P/locations/L" into its
// canonical form.
func (st *store) parent(name string) (string, error) {
	p := strings.Split(name, "/")
	switch {
	case len(p) == 2 && p[0] == "projects" && p[1] != "":
		return "projects/" + st.projectNumber(p[1]), nil
	case len(p) == 4 && p[0] == "projects" && p[1] != "" && p[2] == "locations" && p[3] != "":
		return "projects/" + st.projectNumber(p[1]) + "/locations/" + p[3], nil
	}
	return "", status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: parent %q is not projects/*", name)
}

// secretName parses a secret resource name into its canonical form.
func (st *store) secretName(name string) (string, error) {
	i := strings.LastIndex(name, "/secrets/")
	if i < 0 {
		return "", status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: %q is not projects/*/secrets/*", name)
	}
	parent, err := st.parent(name[:i])
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: %q is not projects/*/secrets/*", name)
	}
	id := name[i+len("/secrets/"):]
	if !validSecretID(id) {
		return "", status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: %q is not projects/*/secrets/*", name)
	}
	return parent + "/secrets/" + id, nil
}

// lookup returns the secret name names (canonical or not).
func (st *store) lookup(name string) (*secret, error) {
	canon, err := st.secretName(name)
	if err != nil {
		return nil, err
	}
	sec, ok := st.secrets[canon]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Secret [%s] not found.", canon)
	}
	return sec, nil
}

// lookupVersion returns the version name names: a number, "latest" (the
// newest version, whatever its state) or one of the secret's version
// aliases.
func (st *store) lookupVersion(name string) (*secret, *version, error) {
	i := strings.LastIndex(name, "/versions/")
	if i < 0 {
		return nil, nil, status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request: %q is not projects/*/secrets/*/versions/*", name)
	}
	sec, err := st.lookup(name[:i])
	if err != nil {
		return nil, nil, err
	}
	v := name[i+len("/versions/"):]
	var n int64
	switch {
	case v == "latest":
		if len(sec.versions) == 0 {
			return nil, nil, status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", sec.meta.Name)
		}
		n = int64(len(sec.versions))
	case isDigits(v):
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			n = 0
		}
	default:
		a, ok := sec.meta.VersionAliases[v]
		if !ok {
			return nil, nil, status.Errorf(codes.NotFound, "Secret Version alias [%s] not found for secret [%s].", v, sec.meta.Name)
		}
		n = a
	}
	if n < 1 || n > int64(len(sec.versions)) {
		return nil, nil, status.Errorf(codes.NotFound, "Secret Version [%s/versions/%s] not found.", sec.meta.Name, v)
	}
	return sec, sec.versions[n-1], nil
}

func (sec *secret) versionName(v *version) string {
	return sec.meta.Name + "/versions/" + strconv.FormatInt(v.number, 10)
}

// proto returns v's metadata, as GetSecretVersion answers it.
func (sec *secret) proto(v *version) *secretmanagerpb.SecretVersion {
	pv := &secretmanagerpb.SecretVersion{
		Name:                           sec.versionName(v),
		CreateTime:                     timestamppb.New(v.created),
		State:                          v.state,
		Etag:                           etag(v),
		ClientSpecifiedPayloadChecksum: v.clientCRC,
	}
	if v.state == secretmanagerpb.SecretVersion_DESTROYED {
		pv.DestroyTime = timestamppb.New(v.destroyed)
	}
	return pv
}

// etag changes whenever the version's state does.
func etag(v *version) string {
	return strconv.Quote(strconv.FormatInt(v.created.UnixNano(), 36) + v.state.String())
}

func (st *store) createSecret(parent, id string, meta *secretmanagerpb.Secret, now time.Time) (*secretmanagerpb.Secret, error) {
	canonParent, err := st.parent(parent)
	if err != nil {
		return nil, err
	}
	if !validSecretID(id) {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid secret_id: it must be 1 to 255 characters of letters, digits, hyphens and underscores.")
	}
	if meta.GetReplication() == nil && !strings.Contains(canonParent, "/locations/") {
		return nil, status.Error(codes.InvalidArgument, "Secret.replication is required.")
	}
	name := canonParent + "/secrets/" + id
	if _, ok := st.secrets[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Secret [%s] already exists.", name)
	}
	m := proto.Clone(meta).(*secretmanagerpb.Secret)
	m.Name = name
	m.CreateTime = timestamppb.New(now)
	m.Etag = strconv.Quote(strconv.FormatInt(now.UnixNano(), 36))
	st.secrets[name] = &secret{meta: m}
	return proto.Clone(m).(*secretmanagerpb.Secret), nil
}

func (st *store) addVersion(parent string, payload *secretmanagerpb.SecretPayload, now time.Time) (*secretmanagerpb.SecretVersion, error) {
	sec, err := st.lookup(parent)
	if err != nil {
		return nil, err
	}
	data := payload.GetData()
	if len(data) > MaxPayload {
		return nil, status.Errorf(codes.InvalidArgument, "Secret Payload cannot be larger than %d bytes.", MaxPayload)
	}
	if payload.DataCrc32C != nil && int64(crc32.Checksum(data, castagnoli)) != payload.GetDataCrc32C() {
		return nil, status.Error(codes.InvalidArgument, "Checksum mismatch: data_crc32c does not match the checksum of data.")
	}
	v := &version{
		number:    int64(len(sec.versions) + 1),
		state:     secretmanagerpb.SecretVersion_ENABLED,
		data:      slices.Clone(data),
		created:   now,
		clientCRC: payload.DataCrc32C != nil,
	}
	if v.data == nil {
		v.data = []byte{}
	}
	sec.versions = append(sec.versions, v)
	return sec.proto(v), nil
}

func (st *store) access(name string) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	sec, v, err := st.lookupVersion(name)
	if err != nil {
		return nil, err
	}
	if v.state != secretmanagerpb.SecretVersion_ENABLED {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in %s state.", sec.versionName(v), v.state)
	}
	crc := int64(crc32.Checksum(v.data, castagnoli))
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    sec.versionName(v),
		Payload: &secretmanagerpb.SecretPayload{Data: slices.Clone(v.data), DataCrc32C: &crc},
	}, nil
}

// setState applies Disable, Enable or Destroy. A destroyed version stays
// destroyed.
func (st *store) setState(name string, to secretmanagerpb.SecretVersion_State, now time.Time) (*secretmanagerpb.SecretVersion, error) {
	sec, v, err := st.lookupVersion(name)
	if err != nil {
		return nil, err
	}
	if v.state == secretmanagerpb.SecretVersion_DESTROYED {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in DESTROYED state.", sec.versionName(v))
	}
	v.state = to
	if to == secretmanagerpb.SecretVersion_DESTROYED {
		v.data, v.destroyed = nil, now
	}
	return sec.proto(v), nil
}

// listVersions lists the versions of parent, newest first, as the service
// does, filtered by state when filter is "state:STATE".
func (st *store) listVersions(parent string, pageSize int32, pageToken, filter string) (*secretmanagerpb.ListSecretVersionsResponse, error) {
	sec, err := st.lookup(parent)
	if err != nil {
		return nil, err
	}
	want := secretmanagerpb.SecretVersion_STATE_UNSPECIFIED
	if filter != "" {
		f, ok := strings.CutPrefix(strings.TrimSpace(filter), "state:")
		s, known := secretmanagerpb.SecretVersion_State_value[strings.ToUpper(strings.TrimSpace(f))]
		if !ok || !known {
			return nil, status.Errorf(codes.InvalidArgument, "gcpsmtest: unsupported filter %q (only state:ENABLED, state:DISABLED and state:DESTROYED are)", filter)
		}
		want = secretmanagerpb.SecretVersion_State(s)
	}
	var all []*secretmanagerpb.SecretVersion
	for i := len(sec.versions) - 1; i >= 0; i-- {
		if v := sec.versions[i]; want == secretmanagerpb.SecretVersion_STATE_UNSPECIFIED || v.state == want {
			all = append(all, sec.proto(v))
		}
	}
	start := 0
	if pageToken != "" {
		n, err := strconv.Atoi(pageToken)
		if err != nil || n < 0 || n > len(all) {
			return nil, status.Error(codes.InvalidArgument, "Invalid page_token.")
		}
		start = n
	}
	size := int(pageSize)
	if size <= 0 || size > 25000 {
		size = 25000
	}
	end := min(start+size, len(all))
	resp := &secretmanagerpb.ListSecretVersionsResponse{Versions: all[start:end], TotalSize: int32(len(all))}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// VersionInfo is what [Server.Versions] reports about one version: never
// its payload.
type VersionInfo struct {
	// Name is the version's resource name, with the project number.
	Name string
	// Number is the version number, from 1.
	Number int64
	// State is ENABLED, DISABLED or DESTROYED.
	State secretmanagerpb.SecretVersion_State
}

// String returns the name and the state.
func (v VersionInfo) String() string { return fmt.Sprintf("%s (%s)", v.Name, v.State) }

// versions lists the versions of a secret, oldest first.
func (st *store) versions(name string) iter.Seq[VersionInfo] {
	sec, err := st.lookup(name)
	if err != nil {
		return func(func(VersionInfo) bool) {}
	}
	out := make([]VersionInfo, 0, len(sec.versions))
	for _, v := range sec.versions {
		out = append(out, VersionInfo{Name: sec.versionName(v), Number: v.number, State: v.state})
	}
	return slices.Values(out)
}

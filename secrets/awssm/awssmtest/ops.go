package awssmtest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// operations maps each implemented operation to its handler. A handler runs
// with Server.mu held and returns the response body or an AWS error; it must
// not block.
var operations = map[string]func(s *Server, body []byte) (any, *apiError){
	OpCreateSecret:             decoded((*Server).createSecret),
	OpGetSecretValue:           decoded((*Server).getSecretValue),
	OpPutSecretValue:           decoded((*Server).putSecretValue),
	OpUpdateSecretVersionStage: decoded((*Server).updateSecretVersionStage),
	OpDescribeSecret:           decoded((*Server).describeSecret),
	OpListSecretVersionIds:     decoded((*Server).listSecretVersionIds),
	OpGetRandomPassword:        decoded((*Server).getRandomPassword),
	OpRotateSecret:             decoded((*Server).rotateSecret),
	OpDeleteSecret:             decoded((*Server).deleteSecret),
}

// decoded adapts a handler that takes its input as a struct.
func decoded[In any](h func(*Server, *In) (any, *apiError)) func(*Server, []byte) (any, *apiError) {
	return func(s *Server, body []byte) (any, *apiError) {
		in := new(In)
		if err := json.Unmarshal(body, in); err != nil {
			// encoding/json errors name types and offsets, not values.
			return nil, newAPIError(http.StatusBadRequest, "SerializationException", "cannot parse request body: %v", err)
		}
		return h(s, in)
	}
}

// dispatch runs op with mu held, then starts the OnRotate hook that a
// RotateSecret asked for.
func (s *Server) dispatch(op string, body []byte) (any, *apiError) {
	s.mu.Lock()
	out, err := operations[op](s, body)
	var hook func()
	if r, ok := out.(*rotateSecretOutput); ok && err == nil && r.VersionID != "" && s.cfg.onRotate != nil && !s.closing && !r.replayed {
		arn, id, f := r.ARN, r.VersionID, s.cfg.onRotate
		s.hooks.Add(1)
		hook = func() {
			defer s.hooks.Done()
			f(arn, id)
		}
	}
	s.mu.Unlock()
	if hook != nil {
		go hook()
	}
	return out, err
}

type tag struct {
	Key   *string `json:"Key,omitempty"`
	Value *string `json:"Value,omitempty"`
}

type rotationRules struct {
	AutomaticallyAfterDays *int64  `json:"AutomaticallyAfterDays,omitempty"`
	Duration               *string `json:"Duration,omitempty"`
	ScheduleExpression     *string `json:"ScheduleExpression,omitempty"`
}

// secretNameRE is the character set and length AWS allows in a name.
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)

// maxSecretSize is AWS's limit on SecretString and SecretBinary.
const maxSecretSize = 65536

// checkValue validates a SecretString/SecretBinary pair; both may be absent
// only if allowEmpty.
func checkValue(str *string, bin []byte, allowEmpty bool) *apiError {
	switch {
	case str != nil && bin != nil:
		return errInvalidParameter("You can't specify both SecretString and SecretBinary.")
	case str == nil && bin == nil && !allowEmpty:
		return errInvalidParameter("You must provide either SecretString or SecretBinary.")
	case str != nil && len(*str) > maxSecretSize, len(bin) > maxSecretSize:
		return errInvalidParameter("The secret value exceeds the maximum size of %d bytes.", maxSecretSize)
	}
	return nil
}

// checkToken validates a ClientRequestToken, which becomes a version id.
func checkToken(token string) *apiError {
	if n := len(token); n < 32 || n > 64 {
		return errInvalidParameter("ClientRequestToken must be 32 to 64 characters long.")
	}
	return nil
}

// ---- CreateSecret

type createSecretInput struct {
	Name               string
	ClientRequestToken string
	Description        string
	SecretString       *string
	SecretBinary       []byte
	Tags               []tag
}

type createSecretOutput struct {
	ARN       string `json:"ARN"`
	Name      string `json:"Name"`
	VersionID string `json:"VersionId,omitempty"`
}

func (s *Server) createSecret(in *createSecretInput) (any, *apiError) {
	if in.Name == "" {
		return nil, errInvalidParameter("You must provide a value for the Name parameter.")
	}
	if !secretNameRE.MatchString(in.Name) {
		return nil, errInvalidParameter("Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!")
	}
	if err := checkValue(in.SecretString, in.SecretBinary, true); err != nil {
		return nil, err
	}
	if in.ClientRequestToken != "" {
		if err := checkToken(in.ClientRequestToken); err != nil {
			return nil, err
		}
	}
	if sec := s.secrets[in.Name]; sec != nil {
		if !sec.deleted.IsZero() {
			return nil, errInvalidRequest("You can't create this secret because a secret with this name is already scheduled for deletion.")
		}
		// A retried CreateSecret (same token, same value) succeeds again.
		if v := sec.versions[in.ClientRequestToken]; v != nil && v.sameData(in.SecretString, in.SecretBinary) {
			return &createSecretOutput{ARN: sec.arn, Name: sec.name, VersionID: v.id}, nil
		}
		return nil, errExists("The operation failed because the secret %s already exists.", in.Name)
	}
	t := now()
	sec := s.addSecret(in.Name, t)
	sec.description = in.Description
	sec.tags = in.Tags
	out := &createSecretOutput{ARN: sec.arn, Name: sec.name}
	if in.SecretString != nil || in.SecretBinary != nil {
		id := in.ClientRequestToken
		if id == "" {
			id = newUUID()
		}
		v := sec.addVersion(id, in.SecretString, in.SecretBinary, t)
		sec.attachStage(StageCurrent, v, t)
		out.VersionID = id
	}
	return out, nil
}

// ---- GetSecretValue

type getSecretValueInput struct {
	SecretId     string
	VersionId    string
	VersionStage string
}

type getSecretValueOutput struct {
	ARN           string    `json:"ARN"`
	Name          string    `json:"Name"`
	VersionID     string    `json:"VersionId"`
	SecretString  *string   `json:"SecretString,omitempty"`
	SecretBinary  []byte    `json:"SecretBinary,omitempty"` // base64, as []byte marshals
	VersionStages []string  `json:"VersionStages"`
	CreatedDate   timestamp `json:"CreatedDate,omitzero"`
}

func (s *Server) getSecretValue(in *getSecretValueInput) (any, *apiError) {
	sec, err := s.lookupLive(in.SecretId)
	if err != nil {
		return nil, err
	}
	var v *version
	switch {
	case in.VersionId != "":
		v = sec.versions[in.VersionId]
		if v == nil || (in.VersionStage != "" && !v.hasStage(in.VersionStage)) {
			if in.VersionStage != "" {
				return nil, errNotFound("Secrets Manager can't find the specified secret value for VersionId: %s and staging label: %s", in.VersionId, in.VersionStage)
			}
			return nil, errNotFound("Secrets Manager can't find the specified secret value for VersionId: %s", in.VersionId)
		}
	default:
		stage := in.VersionStage
		if stage == "" {
			stage = StageCurrent
		}
		v = sec.holder(stage)
		if v == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	if !v.hasValue() {
		return nil, errNotFound("Secrets Manager can't find the specified secret value for VersionId: %s", v.id)
	}
	day := now().Truncate(24 * time.Hour)
	sec.lastAccessed, v.lastAccessed = day, day
	stages := slices.Clone(v.stages)
	if stages == nil {
		stages = []string{}
	}
	return &getSecretValueOutput{
		ARN:           sec.arn,
		Name:          sec.name,
		VersionID:     v.id,
		SecretString:  v.str,
		SecretBinary:  v.bin,
		VersionStages: stages,
		CreatedDate:   timestamp(v.created),
	}, nil
}

// ---- PutSecretValue

type putSecretValueInput struct {
	SecretId           string
	ClientRequestToken string
	SecretString       *string
	SecretBinary       []byte
	VersionStages      []string
}

type putSecretValueOutput struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionID     string   `json:"VersionId"`
	VersionStages []string `json:"VersionStages"`
}

// checkStages validates the labels of PutSecretValue and
// UpdateSecretVersionStage.
func checkStages(stages []string) *apiError {
	if len(stages) > 20 {
		return errInvalidParameter("A version can have at most 20 staging labels.")
	}
	for _, st := range stages {
		if n := len(st); n < 1 || n > 256 {
			return errInvalidParameter("A staging label must be 1 to 256 characters long.")
		}
	}
	return nil
}

func (s *Server) putSecretValue(in *putSecretValueInput) (any, *apiError) {
	sec, err := s.lookupLive(in.SecretId)
	if err != nil {
		return nil, err
	}
	if err := checkValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	if err := checkStages(in.VersionStages); err != nil {
		return nil, err
	}
	token := in.ClientRequestToken
	if token == "" {
		token = newUUID()
	} else if err := checkToken(token); err != nil {
		return nil, err
	}
	stages := in.VersionStages
	if len(stages) == 0 {
		stages = []string{StageCurrent}
	}
	t := now()
	v := sec.versions[token]
	switch {
	case v == nil:
		v = sec.addVersion(token, in.SecretString, in.SecretBinary, t)
	case !v.hasValue():
		// The empty version RotateSecret made: the createSecret step of a
		// rotation fills it.
		v.str, v.bin = in.SecretString, in.SecretBinary
		sec.lastChanged = t
	case v.sameData(in.SecretString, in.SecretBinary):
		// A retry of a request that already succeeded: change nothing.
		return &putSecretValueOutput{ARN: sec.arn, Name: sec.name, VersionID: v.id, VersionStages: slices.Clone(v.stages)}, nil
	default:
		return nil, errExists("You can't modify an existing version, you can only create a new version.")
	}
	for _, st := range stages {
		sec.attachStage(st, v, t)
	}
	return &putSecretValueOutput{ARN: sec.arn, Name: sec.name, VersionID: v.id, VersionStages: slices.Clone(v.stages)}, nil
}

// ---- UpdateSecretVersionStage

type updateSecretVersionStageInput struct {
	SecretId            string
	VersionStage        string
	MoveToVersionId     string
	RemoveFromVersionId string
}

type arnNameOutput struct {
	ARN  string `json:"ARN"`
	Name string `json:"Name"`
}

func (s *Server) updateSecretVersionStage(in *updateSecretVersionStageInput) (any, *apiError) {
	sec, err := s.lookupLive(in.SecretId)
	if err != nil {
		return nil, err
	}
	if in.VersionStage == "" {
		return nil, errInvalidParameter("You must provide a value for the VersionStage parameter.")
	}
	if err := checkStages([]string{in.VersionStage}); err != nil {
		return nil, err
	}
	if in.MoveToVersionId == "" && in.RemoveFromVersionId == "" {
		return nil, errInvalidParameter("You must specify MoveToVersionId, RemoveFromVersionId, or both.")
	}
	holder := sec.holder(in.VersionStage)
	if in.RemoveFromVersionId != "" {
		if sec.versions[in.RemoveFromVersionId] == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret version: %s", in.RemoveFromVersionId)
		}
		if holder == nil || holder.id != in.RemoveFromVersionId {
			return nil, errInvalidParameter("The parameter RemoveFromVersionId doesn't match the version that has the staging label %s.", in.VersionStage)
		}
	}
	t := now()
	if in.MoveToVersionId == "" {
		if in.VersionStage == StageCurrent {
			return nil, errInvalidParameter("You can't remove the staging label AWSCURRENT from a version; move it to another version instead.")
		}
		sec.detachStage(in.VersionStage, t)
		return &arnNameOutput{ARN: sec.arn, Name: sec.name}, nil
	}
	to := sec.versions[in.MoveToVersionId]
	if to == nil {
		return nil, errNotFound("Secrets Manager can't find the specified secret version: %s", in.MoveToVersionId)
	}
	if holder != nil && holder != to && in.RemoveFromVersionId == "" {
		return nil, errInvalidParameter("The staging label %s is currently attached to version %s, so you must explicitly reference that version in RemoveFromVersionId.", in.VersionStage, holder.id)
	}
	sec.attachStage(in.VersionStage, to, t)
	return &arnNameOutput{ARN: sec.arn, Name: sec.name}, nil
}

// ---- DescribeSecret

type describeSecretInput struct {
	SecretId string
}

type describeSecretOutput struct {
	ARN                string              `json:"ARN"`
	Name               string              `json:"Name"`
	Description        string              `json:"Description,omitempty"`
	RotationEnabled    bool                `json:"RotationEnabled,omitempty"`
	RotationLambdaARN  string              `json:"RotationLambdaARN,omitempty"`
	RotationRules      *rotationRules      `json:"RotationRules,omitempty"`
	CreatedDate        timestamp           `json:"CreatedDate,omitzero"`
	LastChangedDate    timestamp           `json:"LastChangedDate,omitzero"`
	LastAccessedDate   timestamp           `json:"LastAccessedDate,omitzero"`
	LastRotatedDate    timestamp           `json:"LastRotatedDate,omitzero"`
	NextRotationDate   timestamp           `json:"NextRotationDate,omitzero"`
	DeletedDate        timestamp           `json:"DeletedDate,omitzero"`
	Tags               []tag               `json:"Tags,omitempty"`
	VersionIdsToStages map[string][]string `json:"VersionIdsToStages,omitempty"`
}

func (s *Server) describeSecret(in *describeSecretInput) (any, *apiError) {
	sec, err := s.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	out := &describeSecretOutput{
		ARN:                sec.arn,
		Name:               sec.name,
		Description:        sec.description,
		RotationEnabled:    sec.rotationEnabled,
		RotationLambdaARN:  sec.rotationLambda,
		RotationRules:      sec.rotationRules,
		CreatedDate:        timestamp(sec.created),
		LastChangedDate:    timestamp(sec.lastChanged),
		LastAccessedDate:   timestamp(sec.lastAccessed),
		LastRotatedDate:    timestamp(sec.lastRotated),
		DeletedDate:        timestamp(sec.deleted),
		Tags:               sec.tags,
		VersionIdsToStages: sec.versionStages(false),
	}
	if r := sec.rotationRules; sec.rotationEnabled && r != nil && r.AutomaticallyAfterDays != nil {
		base := sec.lastRotated
		if base.IsZero() {
			base = sec.created
		}
		out.NextRotationDate = timestamp(base.AddDate(0, 0, int(*r.AutomaticallyAfterDays)))
	}
	return out, nil
}

// ---- ListSecretVersionIds

type listSecretVersionIdsInput struct {
	SecretId          string
	MaxResults        *int
	NextToken         string
	IncludeDeprecated bool
}

type versionEntry struct {
	VersionID        string    `json:"VersionId"`
	VersionStages    []string  `json:"VersionStages,omitempty"`
	CreatedDate      timestamp `json:"CreatedDate,omitzero"`
	LastAccessedDate timestamp `json:"LastAccessedDate,omitzero"`
}

type listSecretVersionIdsOutput struct {
	ARN       string         `json:"ARN"`
	Name      string         `json:"Name"`
	Versions  []versionEntry `json:"Versions"`
	NextToken string         `json:"NextToken,omitempty"`
}

// pageTokenPrefix marks the opaque NextToken, which holds an offset into
// the secret's versions in creation order.
const pageTokenPrefix = "awssmtest-page:"

// parsePageToken returns the offset a NextToken holds.
func parsePageToken(token string) (int, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, false
	}
	digits, ok := strings.CutPrefix(string(raw), pageTokenPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil && n >= 0
}

func (s *Server) listSecretVersionIds(in *listSecretVersionIdsInput) (any, *apiError) {
	sec, err := s.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	limit := 100
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 100 {
			return nil, errInvalidParameter("MaxResults must be between 1 and 100.")
		}
		limit = *in.MaxResults
	}
	var listed []*version
	for _, v := range sec.order {
		if len(v.stages) > 0 || in.IncludeDeprecated {
			listed = append(listed, v)
		}
	}
	start := 0
	if in.NextToken != "" {
		n, ok := parsePageToken(in.NextToken)
		if !ok || n > len(listed) {
			return nil, newAPIError(http.StatusBadRequest, "InvalidNextTokenException", "The NextToken value is invalid.")
		}
		start = n
	}
	end := min(start+limit, len(listed))
	out := &listSecretVersionIdsOutput{ARN: sec.arn, Name: sec.name, Versions: []versionEntry{}}
	for _, v := range listed[start:end] {
		out.Versions = append(out.Versions, versionEntry{
			VersionID:        v.id,
			VersionStages:    slices.Clone(v.stages),
			CreatedDate:      timestamp(v.created),
			LastAccessedDate: timestamp(v.lastAccessed),
		})
	}
	if end < len(listed) {
		out.NextToken = base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.Itoa(end)))
	}
	return out, nil
}

// ---- GetRandomPassword

type getRandomPasswordOutput struct {
	RandomPassword string `json:"RandomPassword"`
}

func (s *Server) getRandomPassword(in *passwordSpec) (any, *apiError) {
	pw, err := in.generate()
	if err != nil {
		return nil, err
	}
	return &getRandomPasswordOutput{RandomPassword: pw}, nil
}

// ---- RotateSecret

type rotateSecretInput struct {
	SecretId           string
	ClientRequestToken string
	RotationLambdaARN  string
	RotationRules      *rotationRules
	RotateImmediately  *bool
}

type rotateSecretOutput struct {
	ARN       string `json:"ARN"`
	Name      string `json:"Name"`
	VersionID string `json:"VersionId,omitempty"`

	replayed bool // a retry that found its rotation already started: no second hook
}

func (s *Server) rotateSecret(in *rotateSecretInput) (any, *apiError) {
	sec, err := s.lookupLive(in.SecretId)
	if err != nil {
		return nil, err
	}
	if r := in.RotationRules; r != nil {
		if r.AutomaticallyAfterDays != nil && r.ScheduleExpression != nil {
			return nil, errInvalidParameter("You can't specify both AutomaticallyAfterDays and ScheduleExpression.")
		}
		if d := r.AutomaticallyAfterDays; d != nil && (*d < 1 || *d > 1000) {
			return nil, errInvalidParameter("AutomaticallyAfterDays must be between 1 and 1000.")
		}
	}
	token := in.ClientRequestToken
	if token == "" {
		token = newUUID()
	} else if err := checkToken(token); err != nil {
		return nil, err
	}
	out := &rotateSecretOutput{ARN: sec.arn, Name: sec.name}
	if pending := sec.holder(StagePending); pending != nil && !pending.hasStage(StageCurrent) {
		if pending.id == token {
			out.VersionID, out.replayed = token, true
			return out, nil
		}
		return nil, errInvalidRequest("A previous rotation isn't complete. That rotation will be reattempted.")
	}
	if sec.versions[token] != nil {
		return nil, errExists("A version with ClientRequestToken %s already exists.", token)
	}
	t := now()
	sec.rotationEnabled = true
	if in.RotationLambdaARN != "" {
		sec.rotationLambda = in.RotationLambdaARN
	}
	if in.RotationRules != nil {
		sec.rotationRules = in.RotationRules
	}
	sec.lastChanged = t
	if in.RotateImmediately != nil && !*in.RotateImmediately {
		return out, nil
	}
	v := sec.addVersion(token, nil, nil, t)
	sec.attachStage(StagePending, v, t)
	sec.rotatingVersion = token
	out.VersionID = token
	return out, nil
}

// ---- DeleteSecret

type deleteSecretInput struct {
	SecretId                   string
	ForceDeleteWithoutRecovery bool
	RecoveryWindowInDays       *int64
}

type deleteSecretOutput struct {
	ARN          string    `json:"ARN"`
	Name         string    `json:"Name"`
	DeletionDate timestamp `json:"DeletionDate,omitzero"`
}

func (s *Server) deleteSecret(in *deleteSecretInput) (any, *apiError) {
	sec, err := s.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	if in.ForceDeleteWithoutRecovery && in.RecoveryWindowInDays != nil {
		return nil, errInvalidParameter("You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	window := int64(30)
	if w := in.RecoveryWindowInDays; w != nil {
		if *w < 7 || *w > 30 {
			return nil, errInvalidParameter("RecoveryWindowInDays must be between 7 and 30.")
		}
		window = *w
	}
	t := now()
	out := &deleteSecretOutput{ARN: sec.arn, Name: sec.name}
	if in.ForceDeleteWithoutRecovery {
		s.removeSecret(sec)
		out.DeletionDate = timestamp(t)
		return out, nil
	}
	if !sec.deleted.IsZero() {
		return nil, errInvalidRequest("You can't perform this operation on the secret because it was already scheduled for deletion.")
	}
	sec.deleted = t
	sec.lastChanged = t
	out.DeletionDate = timestamp(t.AddDate(0, 0, int(window)))
	return out, nil
}

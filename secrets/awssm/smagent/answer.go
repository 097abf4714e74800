package smagent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/internal/secretvalue"
)

// maxAnswer bounds the agent's answer: a secret is at most 64 KiB, and
// base64 makes a binary one a third larger.
const maxAnswer = 1 << 20

// answer is the part of the agent's answer (GetSecretValue's output in
// JSON) that the source reads. ARN, Name and CreatedDate are not read
// (the agent writes CreatedDate as a string of seconds, Secrets Manager as
// a number).
type answer struct {
	VersionID     *string  `json:"VersionId"`
	SecretString  *string  `json:"SecretString"`
	SecretBinary  *string  `json:"SecretBinary"` // base64
	VersionStages []string `json:"VersionStages"`
}

// parseAnswer decodes a 200 answer of the agent. Errors wrap
// secrets.ErrMalformed and never quote the answer, which holds the secret:
// they name the field and the kind of problem only.
func parseAnswer(body []byte) (secretvalue.Value, error) {
	// encoding/json would replace invalid UTF-8 in SecretString with
	// U+FFFD, silently changing the password.
	if !utf8.Valid(body) {
		return secretvalue.Value{}, fmt.Errorf("%w: the agent's answer is not valid UTF-8", secrets.ErrMalformed)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return secretvalue.Value{}, fmt.Errorf("%w: the agent's answer is not a JSON object", secrets.ErrMalformed)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		var syntaxErr *json.SyntaxError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntaxErr):
			return secretvalue.Value{}, fmt.Errorf("%w: the agent's answer is not valid JSON (near byte offset %d)", secrets.ErrMalformed, syntaxErr.Offset)
		case errors.As(err, &typeErr) && typeErr.Field != "":
			// Value is the JSON kind ("number", "object"), not the value.
			return secretvalue.Value{}, fmt.Errorf("%w: field %s of the agent's answer is a JSON %s", secrets.ErrMalformed, typeErr.Field, typeErr.Value)
		}
		return secretvalue.Value{}, fmt.Errorf("%w: the agent's answer could not be decoded", secrets.ErrMalformed)
	}
	v := secretvalue.Value{SecretString: a.SecretString, VersionStages: a.VersionStages}
	if a.VersionID != nil {
		v.VersionID = *a.VersionID
		if strings.ContainsFunc(v.VersionID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return secretvalue.Value{}, fmt.Errorf("%w: field VersionId of the agent's answer holds a control character", secrets.ErrMalformed)
		}
	}
	if a.SecretBinary != nil && a.SecretString == nil {
		b, err := base64.StdEncoding.DecodeString(*a.SecretBinary)
		if err != nil {
			return secretvalue.Value{}, fmt.Errorf("%w: field SecretBinary of the agent's answer is not valid base64", secrets.ErrMalformed)
		}
		v.SecretBinary = b
	}
	return v, nil
}

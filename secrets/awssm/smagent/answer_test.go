package smagent_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/smagent"
)

var answerCases = []struct {
	name    string
	body    string
	version string
	str     string // SecretString, or "" for none
	bin     string // SecretBinary decoded, or "" for none
	err     string // part of the error, "" for none
}{
	{"the agent's form", `{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf","Name":"s","VersionId":"v1","SecretString":"{\"password\":\"pw\"}","VersionStages":["AWSCURRENT"],"CreatedDate":"1700000000.123"}`, "v1", `{"password":"pw"}`, "", ""},
	{"Secrets Manager's form", `{"ARN":"a","Name":"s","VersionId":"v1","SecretString":"pw","VersionStages":["AWSCURRENT"],"CreatedDate":1700000000.123}`, "v1", "pw", "", ""},
	{"binary", `{"VersionId":"v2","SecretBinary":"cHc="}`, "v2", "", "pw", ""},
	{"nulls", `{"ARN":null,"Name":null,"VersionId":null,"SecretString":"pw","VersionStages":null}`, "", "pw", "", ""},
	{"unknown fields", `{"VersionId":"v","SecretString":"pw","Extra":{"a":[1,2]}}`, "v", "pw", "", ""},
	{"not UTF-8", "{\"VersionId\":\"v\",\"SecretString\":\"p\xffw\"}", "", "", "", "not valid UTF-8"},
	{"not JSON", `<html>agent</html>`, "", "", "", "not a JSON object"},
	{"an array", `[{"SecretString":"pw"}]`, "", "", "", "not a JSON object"},
	{"null", `null`, "", "", "", "not a JSON object"},
	{"empty", ``, "", "", "", "not a JSON object"},
	{"truncated", `{"VersionId":"v","SecretString":"secret-pw`, "", "", "", "not valid JSON"},
	{"bad syntax", `{"VersionId":"v","SecretString":"secret-pw" "x"}`, "", "", "", "not valid JSON (near byte offset"},
	{"SecretString a number", `{"VersionId":"v","SecretString":12345678}`, "", "", "", "field SecretString of the agent's answer is a JSON number"},
	{"VersionStages an object", `{"VersionId":"v","SecretString":"pw","VersionStages":{"a":1}}`, "", "", "", "field VersionStages of the agent's answer is a JSON object"},
	{"bad base64", `{"VersionId":"v","SecretBinary":"secret-pw!!"}`, "", "", "", "SecretBinary of the agent's answer is not valid base64"},
	{"control character in VersionId", `{"VersionId":"v\n1","SecretString":"pw"}`, "", "", "", "VersionId of the agent's answer holds a control character"},
}

func TestParseAnswer(t *testing.T) {
	for _, tc := range answerCases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := smagent.ParseAnswer([]byte(tc.body))
			if tc.err != "" {
				if !errors.Is(err, secrets.ErrMalformed) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want ErrMalformed saying %q", err, tc.err)
				}
				wantNoSecret(t, "the error", err.Error(), "secret-pw", "12345678")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.VersionID != tc.version {
				t.Errorf("VersionID %q, want %q", v.VersionID, tc.version)
			}
			switch {
			case tc.str != "" && (v.SecretString == nil || *v.SecretString != tc.str):
				t.Errorf("SecretString %v, want %q", v.SecretString, tc.str)
			case tc.bin != "" && string(v.SecretBinary) != tc.bin:
				t.Errorf("SecretBinary %q, want %q", v.SecretBinary, tc.bin)
			}
		})
	}
}

// FuzzParseAnswer: any answer is parsed or refused with an error wrapping
// ErrMalformed that quotes none of its secret value; what is parsed
// survives a round trip through the agent's JSON form.
func FuzzParseAnswer(f *testing.F) {
	for _, tc := range answerCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := smagent.ParseAnswer(body)
		if err != nil {
			if !errors.Is(err, secrets.ErrMalformed) {
				t.Fatalf("error %q does not wrap ErrMalformed", err)
			}
			// A SecretString that a lenient reader finds must not show.
			var loose struct{ SecretString string }
			if json.Unmarshal(body, &loose) == nil && len(loose.SecretString) >= 4 && strings.Contains(err.Error(), loose.SecretString) {
				t.Fatalf("error %q quotes the secret value", err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		out := map[string]any{"VersionId": v.VersionID, "VersionStages": v.VersionStages}
		if v.SecretString != nil {
			out["SecretString"] = *v.SecretString
		} else if v.SecretBinary != nil {
			out["SecretBinary"] = v.SecretBinary
		}
		b, merr := json.Marshal(out)
		if merr != nil {
			t.Fatal(merr)
		}
		again, err := smagent.ParseAnswer(b)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		switch {
		case again.VersionID != v.VersionID,
			(again.SecretString == nil) != (v.SecretString == nil),
			v.SecretString != nil && *again.SecretString != *v.SecretString,
			string(again.SecretBinary) != string(v.SecretBinary):
			t.Fatalf("round trip changed the answer: %+v, then %+v", v, again)
		}
	})
}

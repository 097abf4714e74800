package azkv_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/azkv"
)

// FuzzFetchValue stores arbitrary values, with or without a content type,
// and checks what Fetch makes of them: a usable credential with the
// version's id, or an error wrapping secrets.ErrMalformed or
// secrets.ErrEmptyPassword that does not contain the value. Never a panic.
func FuzzFetchValue(f *testing.F) {
	for _, seed := range []string{
		rdsJSON, password, password + "\n", password + "\r\n", "", " \n", "app\n" + password,
		password + "\x00x", `{"username":"a\u0000b","password":"x"}`, `{"password":5432}`,
		`{"username":"app"}`, `{"password":"p","port":"70000"}`, `{"password":"p","port":5432.5}`,
		"\xef\xbb\xbf{\"password\":\"p\"}", "{", "[1]", "null", "\xff\xfe",
	} {
		f.Add(seed, "")
	}
	f.Add(password, "application/x-pkcs12")
	f.Add(rdsJSON, "application/json")
	id := azsecrets.ID("https://v.vault.azure.net/secrets/db-app/0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, value, contentType string) {
		sec := azsecrets.Secret{ID: &id, Value: to.Ptr(value), Attributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(true)}}
		if contentType != "" {
			sec.ContentType = to.Ptr(contentType)
		}
		src, err := azkv.NewFromClient(stubAPI{sec}, "db-app")
		if err != nil {
			t.Fatal(err)
		}
		cred, err := src.Fetch(context.Background())
		if err != nil {
			if !errors.Is(err, secrets.ErrMalformed) && !errors.Is(err, secrets.ErrEmptyPassword) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrEmptyPassword", err)
			}
			if strings.TrimSpace(value) != "" && strings.Contains(err.Error(), value) {
				t.Fatalf("the error contains the value")
			}
			return
		}
		if err := cred.Validate(); err != nil {
			t.Fatalf("Fetch returned a credential that does not validate: %v", err)
		}
		if cred.Version != id.Version() {
			t.Fatalf("Version = %q, want %q", cred.Version, id.Version())
		}
	})
}

// errorAPI fails every GetSecret with Key Vault's error answer body.
type errorAPI struct {
	status int
	body   []byte
}

func (a errorAPI) GetSecret(context.Context, string, string, *azsecrets.GetSecretOptions) (azsecrets.GetSecretResponse, error) {
	resp := &http.Response{StatusCode: a.status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(a.body))}
	return azsecrets.GetSecretResponse{}, &azcore.ResponseError{StatusCode: a.status, RawResponse: resp}
}

// FuzzErrorAnswer feeds arbitrary error bodies to the error's summary:
// it stays on one line, short, without control characters. Never a panic.
func FuzzErrorAnswer(f *testing.F) {
	f.Add(403, []byte(`{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}`))
	f.Add(429, []byte(`{"error":{"code":"Throttled","message":"line one\nline two\r\x00"}}`))
	f.Add(404, []byte(`{"error":"not an object"}`))
	f.Add(500, []byte(`<Error><Code>Oops</Code></Error>`))
	f.Add(401, []byte(`{"error":{"message":"`+strings.Repeat("é", 400)+`"}}`))
	f.Add(400, []byte{})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 400 || status > 599 {
			return
		}
		src, err := azkv.NewFromClient(errorAPI{status, body}, "db-app")
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Fetch(context.Background())
		var e *azkv.Error
		if !errors.As(err, &e) || e.StatusCode != status {
			t.Fatalf("Fetch: %v, want an *azkv.Error with status %d", err, status)
		}
		text := err.Error()
		if strings.ContainsAny(text, "\n\r\x00") {
			t.Fatalf("error text spans lines or holds a control character: %q", text)
		}
		if len(e.Message) > 303 || len(e.Code) > 67 || len(e.InnerCode) > 67 {
			t.Fatalf("Message %d, Code %d, InnerCode %d bytes: too long", len(e.Message), len(e.Code), len(e.InnerCode))
		}
	})
}

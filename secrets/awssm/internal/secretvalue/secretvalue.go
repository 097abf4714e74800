// Package secretvalue holds the rules that every reader of AWS Secrets
// Manager applies to a GetSecretValue answer, whatever carried it: the
// SDK (secrets/awssm) or the Secrets Manager Agent's local HTTP API
// (secrets/awssm/smagent). It has no dependency beyond the secrets
// package, so that the agent's source does not link the AWS SDK.
package secretvalue

import (
	"fmt"
	"slices"

	"github.com/pgrotate/rotating/secrets"
)

// StagePending is the staging label of the version a rotation is
// creating.
const StagePending = "AWSPENDING"

// Value is the part of a GetSecretValue answer that a source reads.
type Value struct {
	VersionID     string
	SecretString  *string
	SecretBinary  []byte
	VersionStages []string
}

// Credential parses v's value with [secrets.ParseSecret] and keys, and sets
// the credential's Version to v's VersionId. SecretBinary is parsed as
// SecretString is. A version with neither is an error wrapping
// [secrets.ErrEmptyPassword]. On error the returned credential carries only
// the Version, for the caller's error.
func (v Value) Credential(keys secrets.Keys) (secrets.Credential, error) {
	var (
		cred secrets.Credential
		err  error
	)
	switch {
	case v.SecretString != nil:
		cred, err = secrets.ParseSecret([]byte(*v.SecretString), keys)
	case v.SecretBinary != nil:
		cred, err = secrets.ParseSecret(v.SecretBinary, keys)
	default:
		err = fmt.Errorf("%w: the version holds neither SecretString nor SecretBinary", secrets.ErrEmptyPassword)
	}
	if err != nil {
		return secrets.Credential{Version: v.VersionID}, err
	}
	cred.Version = v.VersionID
	return cred, nil
}

// Pending applies secrets.PendingSource's rules to v, the version labelled
// AWSPENDING, given the label stage that Fetch reads (AWSCURRENT by
// default) and the credential the database rejected.
//
// It returns the pending credential, or why there is none (whyNone, with
// a zero credential and a nil err) when v is rejected's version or holds
// rejected's login, or err when v's value cannot be parsed. finished
// reports that v carries stage as well: the rotation has finished, and the
// credential returned is the new current one (AWS leaves AWSPENDING on the
// version finishSecret promotes for a while).
func (v Value) Pending(stage string, rejected secrets.Credential, keys secrets.Keys) (cred secrets.Credential, finished bool, whyNone string, err error) {
	// Labelled stage too: the rotation has finished, before or after the
	// Fetch that returned rejected; only rejected can tell which.
	finished = slices.Contains(v.VersionStages, stage)
	if v.VersionID != "" && v.VersionID == rejected.Version {
		if finished {
			return secrets.Credential{}, finished, "the " + StagePending + " version is also " + stage + " (no rotation in progress)", nil
		}
		return secrets.Credential{}, finished, "the " + StagePending + " version is the rejected one", nil
	}
	cred, err = v.Credential(keys)
	if err != nil {
		return cred, finished, "", err
	}
	if cred.SameLogin(rejected) {
		return secrets.Credential{}, finished, "the " + StagePending + " version holds the rejected login", nil
	}
	return cred, finished, "", nil
}

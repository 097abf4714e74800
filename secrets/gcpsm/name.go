package gcpsm

import (
	"fmt"
	"strings"
)

// LatestVersion is the version alias that names a secret's most recently
// created version, whatever its state.
const LatestVersion = "latest"

// versionName returns the secret version resource name that name asks for:
// name itself if it names a version, or its "latest" version if it names a
// secret. Accepted forms (P a project id or number, L a location, S a
// secret id, V a version number, "latest" or a version alias):
//
//	projects/P/secrets/S
//	projects/P/secrets/S/versions/V
//	projects/P/locations/L/secrets/S
//	projects/P/locations/L/secrets/S/versions/V
//
// It checks the shape only; the service checks the ids. Resource names are
// not secret, so errors quote them.
func versionName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("gcpsm: empty secret name, want projects/PROJECT/secrets/SECRET[/versions/VERSION]")
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("gcpsm: secret name %q has an empty segment %d", name, i+1)
		}
		for _, r := range p {
			if r <= ' ' || r == 0x7f || r > 0x7e {
				return "", fmt.Errorf("gcpsm: secret name %q has a space, control or non-ASCII character in segment %d", name, i+1)
			}
		}
	}
	rest := parts
	if len(rest) < 4 || rest[0] != "projects" {
		return "", fmt.Errorf("gcpsm: secret name %q does not start with projects/PROJECT/secrets/SECRET", name)
	}
	rest = rest[2:]
	if rest[0] == "locations" {
		rest = rest[2:]
	}
	switch {
	case len(rest) == 2 && rest[0] == "secrets":
		return name + "/versions/" + LatestVersion, nil
	case len(rest) == 4 && rest[0] == "secrets" && rest[2] == "versions":
		return name, nil
	default:
		return "", fmt.Errorf("gcpsm: secret name %q is not projects/PROJECT/[locations/LOCATION/]secrets/SECRET[/versions/VERSION]", name)
	}
}

// versionNumber returns the last segment of a version resource name, such
// as "7" for "projects/123/secrets/db/versions/7": the version number the
// service answered with, whatever alias was asked for. It returns "" if
// name does not end in a versions/ segment.
func versionNumber(name string) string {
	i := strings.LastIndex(name, "/versions/")
	if i < 0 {
		return ""
	}
	v := name[i+len("/versions/"):]
	if v == "" || strings.Contains(v, "/") {
		return ""
	}
	return v
}

package vaulttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

type kvVersion struct {
	data      []byte // the JSON object, so that readers get a copy
	created   time.Time
	deleted   time.Time // zero unless soft-deleted
	destroyed bool
}

type kvEntry struct {
	created, updated time.Time
	current          int
	versions         map[int]*kvVersion
}

// timeString formats t as Vault's KV engine does: RFC 3339 with
// nanoseconds, or "" for a zero time.
func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (v *kvVersion) metadata(n int) map[string]any {
	return map[string]any{
		"version": n, "created_time": timeString(v.created), "deletion_time": timeString(v.deleted),
		"destroyed": v.destroyed, "custom_metadata": nil,
	}
}

// readable reports whether v's data can be read at now.
func (v *kvVersion) readable(now time.Time) bool {
	return !v.destroyed && (v.deleted.IsZero() || now.Before(v.deleted))
}

// cleanKVPath checks a secret's path below the mount.
func cleanKVPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" || strings.Contains(p, "//") || strings.ContainsAny(p, "\x00") {
		return "", fmt.Errorf("vaulttest: KV path %q: want a non-empty path such as \"app/db\"", p)
	}
	return p, nil
}

// PutKV writes data as a new version of the KV secret at path (below the
// mount, such as "app/db") and returns the version number, as a write to
// <mount>/data/<path> does. data must encode as a JSON object.
func (s *Server) PutKV(path string, data map[string]any) (int, error) {
	p, err := cleanKVPath(path)
	if err != nil {
		return 0, err
	}
	raw, err := json.Marshal(data)
	if err != nil || data == nil {
		return 0, fmt.Errorf("vaulttest: PutKV %s: data must encode as a JSON object", p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.putKVLocked(p, raw)
	return n, nil
}

func (s *Server) putKVLocked(p string, raw []byte) int {
	now := time.Now()
	e := s.kv[p]
	if e == nil {
		e = &kvEntry{created: now, versions: map[int]*kvVersion{}}
		s.kv[p] = e
	}
	e.current++
	e.updated = now
	e.versions[e.current] = &kvVersion{data: raw, created: now}
	s.logInfo("kv version written", slog.String("path", p), slog.Int("version", e.current))
	return e.current
}

// DeleteKV soft-deletes versions of the KV secret at path (the current one
// if none are given), as <mount>/delete/<path> does: reads of them answer
// 404 with their metadata until undeleted.
func (s *Server) DeleteKV(path string, versions ...int) error {
	return s.changeKV(path, "delete", versions)
}

// DestroyKV destroys versions of the KV secret at path for good, as
// <mount>/destroy/<path> does.
func (s *Server) DestroyKV(path string, versions ...int) error {
	if len(versions) == 0 {
		return errors.New("vaulttest: DestroyKV: no version given")
	}
	return s.changeKV(path, "destroy", versions)
}

func (s *Server) changeKV(path, action string, versions []int) error {
	p, err := cleanKVPath(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.kv[p]
	if e == nil {
		return fmt.Errorf("vaulttest: no KV secret at %q", p)
	}
	if len(versions) == 0 {
		versions = []int{e.current}
	}
	s.changeVersionsLocked(e, action, versions)
	return nil
}

func (s *Server) changeVersionsLocked(e *kvEntry, action string, versions []int) {
	now := time.Now()
	for _, n := range versions {
		v := e.versions[n]
		if v == nil {
			continue
		}
		switch action {
		case "delete":
			if v.deleted.IsZero() && !v.destroyed {
				v.deleted = now
			}
		case "undelete":
			if !v.destroyed {
				v.deleted = time.Time{}
			}
		case "destroy":
			v.destroyed = true
		}
	}
	e.updated = now
}

func (s *Server) kvPath(r *request, kind string) (string, *apiError) {
	p, err := cleanKVPath(strings.TrimPrefix(r.path, s.cfg.kvMount+"/"+kind+"/"))
	if err != nil {
		return "", badRequest("invalid path")
	}
	return p, nil
}

func (s *Server) handleKVRead(r *request) (reply, *apiError) {
	p, e := s.kvPath(r, "data")
	if e != nil {
		return reply{}, e
	}
	want := 0
	if v := r.query["version"]; len(v) > 0 && v[0] != "" {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			return reply{}, badRequest("invalid version %q", v[0])
		}
		want = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := s.kv[p]
	if entry == nil {
		return reply{}, &apiError{status: http.StatusNotFound}
	}
	if want == 0 {
		want = entry.current
	}
	v := entry.versions[want]
	if v == nil {
		return reply{}, &apiError{status: http.StatusNotFound}
	}
	if !v.readable(time.Now()) {
		// Vault answers 404 with the version's metadata and no data.
		return reply{status: http.StatusNotFound, body: &envelope{
			Data: map[string]any{"data": nil, "metadata": v.metadata(want)}}}, nil
	}
	var data map[string]any
	json.Unmarshal(v.data, &data)
	return ok(&envelope{Data: map[string]any{"data": data, "metadata": v.metadata(want)}})
}

func (s *Server) handleKVWrite(r *request) (reply, *apiError) {
	p, e := s.kvPath(r, "data")
	if e != nil {
		return reply{}, e
	}
	data, isMap := r.body["data"].(map[string]any)
	if !isMap {
		return reply{}, badRequest("no data provided")
	}
	raw, _ := json.Marshal(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts, hasOpts := r.body["options"].(map[string]any); hasOpts {
		if casRaw, hasCAS := opts["cas"]; hasCAS {
			cas, isNum := casRaw.(float64)
			if !isNum {
				return reply{}, badRequest("error parsing check-and-set parameter")
			}
			current := 0
			if entry := s.kv[p]; entry != nil {
				current = entry.current
			}
			if int(cas) != current {
				return reply{}, badRequest("check-and-set parameter did not match the current version")
			}
		}
	}
	n := s.putKVLocked(p, raw)
	return ok(&envelope{Data: s.kv[p].versions[n].metadata(n)})
}

func (s *Server) handleKVDeleteLatest(r *request) (reply, *apiError) {
	p, e := s.kvPath(r, "data")
	if e != nil {
		return reply{}, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if entry := s.kv[p]; entry != nil {
		s.changeVersionsLocked(entry, "delete", []int{entry.current})
	}
	return noContent()
}

func (s *Server) handleKVVersions(r *request) (reply, *apiError) {
	kind, _, _ := strings.Cut(strings.TrimPrefix(r.path, s.cfg.kvMount+"/"), "/")
	p, e := s.kvPath(r, kind)
	if e != nil {
		return reply{}, e
	}
	list, _ := r.body["versions"].([]any)
	var versions []int
	for _, v := range list {
		switch x := v.(type) {
		case float64:
			versions = append(versions, int(x))
		case string:
			if n, err := strconv.Atoi(x); err == nil {
				versions = append(versions, n)
			}
		}
	}
	if len(versions) == 0 {
		return reply{}, badRequest("No version number provided")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if entry := s.kv[p]; entry != nil {
		s.changeVersionsLocked(entry, kind, versions)
	}
	return noContent()
}

func (s *Server) handleKVMetadata(r *request) (reply, *apiError) {
	p, e := s.kvPath(r, "metadata")
	if e != nil {
		return reply{}, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := s.kv[p]
	if entry == nil {
		return reply{}, &apiError{status: http.StatusNotFound}
	}
	versions := map[string]any{}
	nums := make([]int, 0, len(entry.versions))
	for n := range entry.versions {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, n := range nums {
		v := entry.versions[n]
		versions[strconv.Itoa(n)] = map[string]any{
			"created_time": timeString(v.created), "deletion_time": timeString(v.deleted), "destroyed": v.destroyed,
		}
	}
	return ok(&envelope{Data: map[string]any{
		"versions": versions, "current_version": entry.current, "oldest_version": 0,
		"created_time": timeString(entry.created), "updated_time": timeString(entry.updated),
		"max_versions": 0, "cas_required": false, "delete_version_after": "0s", "custom_metadata": nil,
	}})
}

func (s *Server) handleKVDeleteMetadata(r *request) (reply, *apiError) {
	p, e := s.kvPath(r, "metadata")
	if e != nil {
		return reply{}, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.kv, p)
	return noContent()
}

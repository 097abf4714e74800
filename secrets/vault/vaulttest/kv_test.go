package vaulttest_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

func TestKV(t *testing.T) {
	t.Parallel()
	srv, err := vaulttest.NewServer(nil) // KV needs no database
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	kv := client(t, srv, "").KVv2("secret")
	ctx := t.Context()

	before := time.Now()
	w1, err := kv.Put(ctx, "app/db", map[string]any{"username": "app", "password": "kv-pw-1", "port": 5432})
	if err != nil {
		t.Fatal(err)
	}
	if w1.VersionMetadata == nil || w1.VersionMetadata.Version != 1 || w1.VersionMetadata.CreatedTime.Before(before.Add(-time.Second)) {
		t.Errorf("first write: %+v", w1.VersionMetadata)
	}
	// A write from Go is a version like any other.
	if n, err := srv.PutKV("app/db", map[string]any{"username": "app", "password": "kv-pw-2"}); err != nil || n != 2 {
		t.Fatalf("PutKV = %d, %v; want 2", n, err)
	}

	got, err := kv.Get(ctx, "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if got.VersionMetadata.Version != 2 || got.Data["password"] != "kv-pw-2" {
		t.Errorf("latest: version %d data %v", got.VersionMetadata.Version, got.Data)
	}
	old, err := kv.GetVersion(ctx, "app/db", 1)
	if err != nil {
		t.Fatal(err)
	}
	if old.VersionMetadata.Version != 1 || old.Data["password"] != "kv-pw-1" {
		t.Errorf("version 1: %d %v", old.VersionMetadata.Version, old.Data)
	}

	// Check-and-set.
	if _, err := kv.Put(ctx, "app/db", map[string]any{"x": "y"}, api.WithCheckAndSet(1)); err == nil {
		t.Error("a write with a stale cas succeeded")
	} else {
		wantStatus(t, err, 400, "check-and-set parameter did not match the current version")
	}

	// A deleted version answers its metadata and no data; a destroyed
	// one says so.
	if err := kv.Delete(ctx, "app/db"); err != nil {
		t.Fatal(err)
	}
	del, err := kv.Get(ctx, "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if del.Data != nil || del.VersionMetadata.Version != 2 || del.VersionMetadata.DeletionTime.IsZero() {
		t.Errorf("deleted latest: data %v metadata %+v", del.Data, del.VersionMetadata)
	}
	if err := kv.Undelete(ctx, "app/db", []int{2}); err != nil {
		t.Fatal(err)
	}
	if und, err := kv.Get(ctx, "app/db"); err != nil || und.Data["password"] != "kv-pw-2" {
		t.Errorf("after undelete: %v, %v", und, err)
	}
	if err := kv.Destroy(ctx, "app/db", []int{1}); err != nil {
		t.Fatal(err)
	}
	dst, err := kv.GetVersion(ctx, "app/db", 1)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Data != nil || !dst.VersionMetadata.Destroyed {
		t.Errorf("destroyed version: data %v metadata %+v", dst.Data, dst.VersionMetadata)
	}

	meta, err := kv.GetMetadata(ctx, "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if meta.CurrentVersion != 2 || len(meta.Versions) != 2 || !meta.Versions["1"].Destroyed {
		t.Errorf("metadata: %+v", meta)
	}

	if _, err := kv.Get(ctx, "nothing/here"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Errorf("absent path: %v, want ErrSecretNotFound", err)
	}
	if _, err := kv.GetVersion(ctx, "app/db", 9); !errors.Is(err, api.ErrSecretNotFound) {
		t.Errorf("absent version: %v, want ErrSecretNotFound", err)
	}
	if err := kv.DeleteMetadata(ctx, "app/db"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "app/db"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Errorf("after delete of the metadata: %v", err)
	}
	if n := srv.Calls(vaulttest.OpKVRead); n != 8 {
		t.Errorf("Calls(OpKVRead) = %d, want 8", n)
	}
	if n := srv.Calls(vaulttest.OpKVWrite); n != 2 {
		t.Errorf("Calls(OpKVWrite) = %d, want 2", n)
	}

	// Without a database, the database engine says so.
	_, err = client(t, srv, "").Logical().ReadWithContext(ctx, "database/creds/app")
	wantStatus(t, err, 400, "unknown role: app")
	if err := srv.SetRole("app", vaulttest.DynamicRole{}); err == nil {
		t.Error("SetRole without a database succeeded")
	}
}

func TestKVMount(t *testing.T) {
	t.Parallel()
	srv, err := vaulttest.NewServer(nil, vaulttest.WithKVMount("kv-team/"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "")
	if _, err := c.KVv2("kv-team").Put(t.Context(), "db", map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVv2("secret").Get(t.Context(), "db"); err == nil {
		t.Error("the default mount answers though the KV engine is elsewhere")
	}
	for _, bad := range []string{"", "/", "sys", "auth/x"} {
		if _, err := vaulttest.NewServer(nil, vaulttest.WithKVMount(bad)); err == nil {
			t.Errorf("WithKVMount(%q) accepted", bad)
		}
	}
}

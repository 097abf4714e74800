package awssmtest_test

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

var arnRE = regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:123456789012:secret:(.+)-[A-Za-z0-9]{6}$`)

// token returns a ClientRequestToken of the length AWS requires.
func token(tag string) string { return tag + strings.Repeat("0", 36-len(tag)) }

func TestCreateSecret(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()

	out, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         s("prod/app/db"),
		SecretString: s(`{"username":"app","password":"p1"}`),
		Description:  s("app database"),
		Tags:         []types.Tag{{Key: s("team"), Value: s("db")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := arnRE.FindStringSubmatch(aws.ToString(out.ARN)); m == nil || m[1] != "prod/app/db" {
		t.Errorf("ARN = %q, want the AWS form for prod/app/db", aws.ToString(out.ARN))
	}
	if aws.ToString(out.Name) != "prod/app/db" || aws.ToString(out.VersionId) == "" {
		t.Errorf("Name, VersionId = %q, %q", aws.ToString(out.Name), aws.ToString(out.VersionId))
	}
	if got := srv.Versions("prod/app/db"); !slices.Equal(got[aws.ToString(out.VersionId)], []string{"AWSCURRENT"}) {
		t.Errorf("Versions = %v, want the new version AWSCURRENT", got)
	}

	t.Run("binary", func(t *testing.T) {
		bin := []byte{0, 1, 2, 0xff, '"'}
		if _, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: s("bin"), SecretBinary: bin}); err != nil {
			t.Fatal(err)
		}
		got, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("bin")})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.SecretBinary, bin) || got.SecretString != nil {
			t.Errorf("SecretBinary = %v, SecretString set = %v", got.SecretBinary, got.SecretString != nil)
		}
	})

	t.Run("without value", func(t *testing.T) {
		out, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: s("empty")})
		if err != nil {
			t.Fatal(err)
		}
		if out.VersionId != nil {
			t.Errorf("VersionId = %q, want none", *out.VersionId)
		}
		_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("empty")})
		wantAs[*types.ResourceNotFoundException](t, err)
	})

	t.Run("idempotent token", func(t *testing.T) {
		in := &secretsmanager.CreateSecretInput{Name: s("idem"), SecretString: s("v"), ClientRequestToken: s(token("create"))}
		first, err := c.CreateSecret(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.CreateSecret(ctx, in)
		if err != nil {
			t.Fatalf("retry with same token and value: %v", err)
		}
		if *again.VersionId != *first.VersionId || *again.ARN != *first.ARN || *first.VersionId != token("create") {
			t.Errorf("retry answered %s %s, first %s %s", *again.ARN, *again.VersionId, *first.ARN, *first.VersionId)
		}
		in.SecretString = s("other")
		_, err = c.CreateSecret(ctx, in)
		wantAs[*types.ResourceExistsException](t, err)
	})

	errCases := []struct {
		name string
		in   secretsmanager.CreateSecretInput
		code string
	}{
		{"exists", secretsmanager.CreateSecretInput{Name: s("prod/app/db"), SecretString: s("x")}, "ResourceExistsException"},
		{"bad name", secretsmanager.CreateSecretInput{Name: s("no spaces"), SecretString: s("x")}, "InvalidParameterException"},
		{"string and binary", secretsmanager.CreateSecretInput{Name: s("both"), SecretString: s("x"), SecretBinary: []byte("y")}, "InvalidParameterException"},
		{"short token", secretsmanager.CreateSecretInput{Name: s("tok"), SecretString: s("x"), ClientRequestToken: s("short")}, "InvalidParameterException"},
		{"too big", secretsmanager.CreateSecretInput{Name: s("big"), SecretString: s(strings.Repeat("x", 65537))}, "InvalidParameterException"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateSecret(ctx, &tc.in)
			wantCode(t, err, tc.code)
		})
	}
}

func TestGetSecretValue(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	arn, v1 := srv.CreateSecret("db", "one")
	v2 := srv.PutValue("db", "two")
	v3 := srv.PutValue("db", "three", "AWSPENDING")

	cases := []struct {
		name            string
		id, vid, stage  string
		wantVal, wantID string
		wantStages      []string
		code            string
	}{
		{name: "default is AWSCURRENT", id: "db", wantVal: "two", wantID: v2, wantStages: []string{"AWSCURRENT"}},
		{name: "by stage", id: "db", stage: "AWSPREVIOUS", wantVal: "one", wantID: v1, wantStages: []string{"AWSPREVIOUS"}},
		{name: "pending", id: "db", stage: "AWSPENDING", wantVal: "three", wantID: v3, wantStages: []string{"AWSPENDING"}},
		{name: "by version id", id: "db", vid: v1, wantVal: "one", wantID: v1, wantStages: []string{"AWSPREVIOUS"}},
		{name: "id and stage agree", id: "db", vid: v2, stage: "AWSCURRENT", wantVal: "two", wantID: v2, wantStages: []string{"AWSCURRENT"}},
		{name: "by full ARN", id: arn, wantVal: "two", wantID: v2, wantStages: []string{"AWSCURRENT"}},
		{name: "id and stage disagree", id: "db", vid: v1, stage: "AWSCURRENT", code: "ResourceNotFoundException"},
		{name: "unknown stage", id: "db", stage: "CUSTOM", code: "ResourceNotFoundException"},
		{name: "unknown version", id: "db", vid: token("nope"), code: "ResourceNotFoundException"},
		{name: "unknown secret", id: "nope", code: "ResourceNotFoundException"},
		{name: "partial ARN", id: strings.TrimSuffix(arn, arn[len(arn)-7:]), code: "ResourceNotFoundException"},
		{name: "ARN with wrong suffix", id: arn[:len(arn)-6] + "zzzzzz", code: "ResourceNotFoundException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &secretsmanager.GetSecretValueInput{SecretId: s(tc.id)}
			if tc.vid != "" {
				in.VersionId = s(tc.vid)
			}
			if tc.stage != "" {
				in.VersionStage = s(tc.stage)
			}
			out, err := c.GetSecretValue(ctx, in)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(out.SecretString) != tc.wantVal || aws.ToString(out.VersionId) != tc.wantID {
				t.Errorf("got value %q version %s, want %q %s", aws.ToString(out.SecretString), aws.ToString(out.VersionId), tc.wantVal, tc.wantID)
			}
			if !slices.Equal(out.VersionStages, tc.wantStages) {
				t.Errorf("VersionStages = %v, want %v", out.VersionStages, tc.wantStages)
			}
			if aws.ToString(out.ARN) != arn || aws.ToString(out.Name) != "db" {
				t.Errorf("ARN, Name = %s, %s", aws.ToString(out.ARN), aws.ToString(out.Name))
			}
			if out.CreatedDate == nil || out.CreatedDate.Before(before) || out.CreatedDate.After(time.Now().Add(time.Second)) {
				t.Errorf("CreatedDate = %v, want about now", out.CreatedDate)
			}
		})
	}

	t.Run("error types", func(t *testing.T) {
		_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("nope")})
		e := wantAs[*types.ResourceNotFoundException](t, err)
		if !strings.Contains(e.ErrorMessage(), "can't find") {
			t.Errorf("message = %q", e.ErrorMessage())
		}
	})

	t.Run("error hides value", func(t *testing.T) {
		_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db"), VersionId: s(v1), VersionStage: s("AWSCURRENT")})
		if err == nil || strings.Contains(err.Error(), "one") {
			t.Errorf("error %v", err)
		}
	})
}

func TestPutSecretValue(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	_, v1 := srv.CreateSecret("db", "one")

	out, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("two")})
	if err != nil {
		t.Fatal(err)
	}
	v2 := aws.ToString(out.VersionId)
	if !slices.Equal(out.VersionStages, []string{"AWSCURRENT"}) {
		t.Errorf("VersionStages = %v, want the default [AWSCURRENT]", out.VersionStages)
	}
	want := map[string][]string{v1: {"AWSPREVIOUS"}, v2: {"AWSCURRENT"}}
	if got := srv.Versions("db"); !equalVersions(got, want) {
		t.Errorf("after put: Versions = %v, want %v (AWSPREVIOUS follows AWSCURRENT)", got, want)
	}

	// A third put leaves v1 without labels: deprecated.
	out3, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretBinary: []byte("three")})
	if err != nil {
		t.Fatal(err)
	}
	v3 := aws.ToString(out3.VersionId)
	want = map[string][]string{v1: {}, v2: {"AWSPREVIOUS"}, v3: {"AWSCURRENT"}}
	if got := srv.Versions("db"); !equalVersions(got, want) {
		t.Errorf("after second put: Versions = %v, want %v", got, want)
	}

	t.Run("pending leaves current alone", func(t *testing.T) {
		out, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("p"), VersionStages: []string{"AWSPENDING"}})
		if err != nil {
			t.Fatal(err)
		}
		got := srv.Versions("db")
		if !slices.Equal(got[aws.ToString(out.VersionId)], []string{"AWSPENDING"}) || !slices.Equal(got[v3], []string{"AWSCURRENT"}) {
			t.Errorf("Versions = %v", got)
		}
	})

	t.Run("idempotent token", func(t *testing.T) {
		in := &secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("four"), ClientRequestToken: s(token("put"))}
		first, err := c.PutSecretValue(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		n := len(srv.Versions("db"))
		again, err := c.PutSecretValue(ctx, in)
		if err != nil {
			t.Fatalf("same token, same data: %v", err)
		}
		if *again.VersionId != *first.VersionId || *first.VersionId != token("put") || len(srv.Versions("db")) != n {
			t.Errorf("retry made a change: %s vs %s, %d versions (was %d)", *again.VersionId, *first.VersionId, len(srv.Versions("db")), n)
		}
		in.SecretString = s("five")
		_, err = c.PutSecretValue(ctx, in)
		wantAs[*types.ResourceExistsException](t, err)
	})

	errCases := []struct {
		name string
		in   secretsmanager.PutSecretValueInput
		code string
	}{
		{"unknown secret", secretsmanager.PutSecretValueInput{SecretId: s("nope"), SecretString: s("x")}, "ResourceNotFoundException"},
		{"no value", secretsmanager.PutSecretValueInput{SecretId: s("db")}, "InvalidParameterException"},
		{"both values", secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("x"), SecretBinary: []byte("y")}, "InvalidParameterException"},
		{"token too short", secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("x"), ClientRequestToken: s("abc")}, "InvalidParameterException"},
		{"token too long", secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("x"), ClientRequestToken: s(strings.Repeat("a", 65))}, "InvalidParameterException"},
		{"empty label", secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("x"), VersionStages: []string{""}}, "InvalidParameterException"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.PutSecretValue(ctx, &tc.in)
			wantCode(t, err, tc.code)
		})
	}
}

func equalVersions(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok || !slices.Equal(g, w) {
			return false
		}
	}
	return true
}

func TestUpdateSecretVersionStage(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	_, v1 := srv.CreateSecret("db", "one")
	v2 := srv.PutValue("db", "two", "AWSPENDING")
	v3 := srv.PutValue("db", "three", "CUSTOM")

	update := func(stage, move, remove string) error {
		in := &secretsmanager.UpdateSecretVersionStageInput{SecretId: s("db"), VersionStage: s(stage)}
		if move != "" {
			in.MoveToVersionId = s(move)
		}
		if remove != "" {
			in.RemoveFromVersionId = s(remove)
		}
		_, err := c.UpdateSecretVersionStage(ctx, in)
		return err
	}

	// Errors first, while the state is known.
	wantCode(t, update("AWSCURRENT", v2, ""), "InvalidParameterException") // attached elsewhere: RemoveFromVersionId required
	wantCode(t, update("AWSCURRENT", v2, v3), "InvalidParameterException") // RemoveFromVersionId is not the holder
	wantCode(t, update("AWSCURRENT", "", v1), "InvalidParameterException") // AWSCURRENT can only be moved
	wantCode(t, update("AWSCURRENT", "", ""), "InvalidParameterException") // nothing to do
	wantCode(t, update("AWSCURRENT", token("x"), v1), "ResourceNotFoundException")
	wantCode(t, update("AWSCURRENT", v2, token("x")), "ResourceNotFoundException")
	if got := srv.Versions("db"); !equalVersions(got, map[string][]string{v1: {"AWSCURRENT"}, v2: {"AWSPENDING"}, v3: {"CUSTOM"}}) {
		t.Fatalf("a failed update changed the labels: %v", got)
	}

	// finishSecret: AWSCURRENT to v2; AWSPREVIOUS follows to v1.
	if err := update("AWSCURRENT", v2, v1); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{v1: {"AWSPREVIOUS"}, v2: {"AWSCURRENT", "AWSPENDING"}, v3: {"CUSTOM"}}
	if got := srv.Versions("db"); !equalVersions(got, want) {
		t.Errorf("Versions = %v, want %v", got, want)
	}

	// Moving a label to the version that has it is a no-op.
	if err := update("AWSCURRENT", v2, v2); err != nil {
		t.Error(err)
	}
	if err := update("AWSCURRENT", v2, ""); err != nil {
		t.Error(err)
	}

	// A label that is nowhere can be attached without RemoveFromVersionId.
	if err := update("NEW", v1, ""); err != nil {
		t.Error(err)
	}

	// Removing the only label of v3 deprecates it.
	if err := update("CUSTOM", "", v3); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.VersionIdsToStages[v3]; ok {
		t.Errorf("deprecated version %s still in VersionIdsToStages %v", v3, d.VersionIdsToStages)
	}
	if got := srv.Versions("db")[v3]; got == nil || len(got) != 0 {
		t.Errorf("Versions()[v3] = %#v, want an empty list", got)
	}

	// Rolling back: AWSCURRENT to v1 (which has AWSPREVIOUS) puts AWSPREVIOUS on v2.
	if err := update("AWSCURRENT", v1, v2); err != nil {
		t.Fatal(err)
	}
	want = map[string][]string{v1: {"AWSCURRENT", "NEW"}, v2: {"AWSPENDING", "AWSPREVIOUS"}, v3: {}}
	if got := srv.Versions("db"); !equalVersions(got, want) {
		t.Errorf("after rollback Versions = %v, want %v", got, want)
	}

	_, err = c.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: s("nope"), VersionStage: s("AWSCURRENT"), MoveToVersionId: s(v1)})
	wantAs[*types.ResourceNotFoundException](t, err)
}

func TestDescribeSecret(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	out, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: s("db"), SecretString: s("one"), Description: s("the db"),
		Tags: []types.Tag{{Key: s("k"), Value: s("v")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v1 := *out.VersionId

	d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: out.ARN})
	if err != nil {
		t.Fatal(err)
	}
	if *d.ARN != *out.ARN || *d.Name != "db" || aws.ToString(d.Description) != "the db" {
		t.Errorf("ARN, Name, Description = %s %s %q", *d.ARN, *d.Name, aws.ToString(d.Description))
	}
	if len(d.Tags) != 1 || *d.Tags[0].Key != "k" || *d.Tags[0].Value != "v" {
		t.Errorf("Tags = %v", d.Tags)
	}
	if d.CreatedDate == nil || d.CreatedDate.Before(before) || d.LastChangedDate == nil {
		t.Errorf("CreatedDate, LastChangedDate = %v, %v", d.CreatedDate, d.LastChangedDate)
	}
	if aws.ToBool(d.RotationEnabled) || d.RotationRules != nil || d.LastRotatedDate != nil || d.NextRotationDate != nil || d.LastAccessedDate != nil || d.DeletedDate != nil {
		t.Errorf("unset fields populated: %+v", d)
	}
	if !slices.Equal(stagesOf(d, v1), []string{"AWSCURRENT"}) || len(d.VersionIdsToStages) != 1 {
		t.Errorf("VersionIdsToStages = %v", d.VersionIdsToStages)
	}

	if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")}); err != nil {
		t.Fatal(err)
	}
	d, _ = c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("db")})
	if d.LastAccessedDate == nil || !d.LastAccessedDate.Equal(time.Now().UTC().Truncate(24*time.Hour)) {
		t.Errorf("LastAccessedDate = %v, want today's date", d.LastAccessedDate)
	}

	_, err = c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("nope")})
	wantAs[*types.ResourceNotFoundException](t, err)
}

func TestListSecretVersionIds(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	_, v1 := srv.CreateSecret("db", "1")
	ids := []string{v1}
	for i := 2; i <= 5; i++ {
		ids = append(ids, srv.PutValue("db", "v"))
	}
	// v1, v2, v3 are deprecated; v4 AWSPREVIOUS, v5 AWSCURRENT.

	list := func(includeDeprecated bool, pageSize int32) []types.SecretVersionsListEntry {
		t.Helper()
		p := secretsmanager.NewListSecretVersionIdsPaginator(c, &secretsmanager.ListSecretVersionIdsInput{
			SecretId: s("db"), IncludeDeprecated: aws.Bool(includeDeprecated), MaxResults: aws.Int32(pageSize),
		})
		var all []types.SecretVersionsListEntry
		pages := 0
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Versions) > int(pageSize) || *page.Name != "db" {
				t.Fatalf("page of %d versions, name %q", len(page.Versions), *page.Name)
			}
			all = append(all, page.Versions...)
			pages++
		}
		if want := (len(all) + int(pageSize) - 1) / int(pageSize); pages != want {
			t.Errorf("%d pages for %d versions of page size %d", pages, len(all), pageSize)
		}
		return all
	}

	all := list(true, 2)
	if len(all) != 5 {
		t.Fatalf("with deprecated: %d versions, want 5", len(all))
	}
	for i, e := range all {
		if *e.VersionId != ids[i] || e.CreatedDate == nil {
			t.Errorf("entry %d = %s (created %v), want %s", i, *e.VersionId, e.CreatedDate, ids[i])
		}
	}
	if len(all[0].VersionStages) != 0 || !slices.Equal(all[4].VersionStages, []string{"AWSCURRENT"}) {
		t.Errorf("stages: first %v, last %v", all[0].VersionStages, all[4].VersionStages)
	}
	live := list(false, 100)
	if len(live) != 2 || *live[0].VersionId != ids[3] || *live[1].VersionId != ids[4] {
		t.Errorf("without deprecated: %d versions", len(live))
	}

	_, err := c.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: s("db"), NextToken: s("garbage")})
	wantAs[*types.InvalidNextTokenException](t, err)
	_, err = c.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: s("db"), MaxResults: aws.Int32(0)})
	wantAs[*types.InvalidParameterException](t, err)
	_, err = c.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: s("nope")})
	wantAs[*types.ResourceNotFoundException](t, err)
}

func TestGetRandomPassword(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	ctx := t.Context()

	classes := map[string]string{
		"lower": "abcdefghijklmnopqrstuvwxyz",
		"upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
		"digit": "0123456789",
		"punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
	}
	cases := []struct {
		name     string
		in       secretsmanager.GetRandomPasswordInput
		length   int
		must     []string // classes that must appear
		mustNot  string   // characters that must not appear
		onlyFrom string   // if set, every character comes from here
	}{
		{name: "defaults", length: 32, must: []string{"lower", "upper", "digit", "punct"}, mustNot: " "},
		{name: "rotation function's exclusions", in: secretsmanager.GetRandomPasswordInput{ExcludeCharacters: s(`:/@"'\`)},
			length: 32, must: []string{"lower", "upper", "digit", "punct"}, mustNot: `:/@"'\ `},
		{name: "length", in: secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(100)}, length: 100},
		{name: "no numbers or punctuation", in: secretsmanager.GetRandomPasswordInput{ExcludeNumbers: aws.Bool(true), ExcludePunctuation: aws.Bool(true)},
			length: 32, must: []string{"lower", "upper"}, onlyFrom: classes["lower"] + classes["upper"]},
		{name: "digits only", in: secretsmanager.GetRandomPasswordInput{ExcludeLowercase: aws.Bool(true), ExcludeUppercase: aws.Bool(true), ExcludePunctuation: aws.Bool(true)},
			length: 32, onlyFrom: classes["digit"]},
		{name: "space only", in: secretsmanager.GetRandomPasswordInput{IncludeSpace: aws.Bool(true), PasswordLength: aws.Int64(5),
			ExcludeLowercase: aws.Bool(true), ExcludeUppercase: aws.Bool(true), ExcludePunctuation: aws.Bool(true), ExcludeNumbers: aws.Bool(true)},
			length: 5, onlyFrom: " "},
		{name: "one char without requirement", in: secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(1), RequireEachIncludedType: aws.Bool(false)}, length: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.GetRandomPassword(ctx, &tc.in)
			if err != nil {
				t.Fatal(err)
			}
			pw := aws.ToString(out.RandomPassword)
			if len(pw) != tc.length {
				t.Errorf("length %d, want %d", len(pw), tc.length)
			}
			for _, cl := range tc.must {
				if !strings.ContainsAny(pw, classes[cl]) {
					t.Errorf("no %s character", cl)
				}
			}
			if strings.ContainsAny(pw, tc.mustNot) {
				t.Errorf("has one of %q", tc.mustNot)
			}
			if tc.onlyFrom != "" && strings.Trim(pw, tc.onlyFrom) != "" {
				t.Errorf("has characters outside %q", tc.onlyFrom)
			}
		})
	}

	errCases := []struct {
		name string
		in   secretsmanager.GetRandomPasswordInput
	}{
		{"zero length", secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(0)}},
		{"too long", secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(4097)}},
		{"everything excluded", secretsmanager.GetRandomPasswordInput{ExcludeLowercase: aws.Bool(true), ExcludeUppercase: aws.Bool(true), ExcludePunctuation: aws.Bool(true), ExcludeNumbers: aws.Bool(true)}},
		{"too short for every type", secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(3)}},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.GetRandomPassword(ctx, &tc.in)
			wantAs[*types.InvalidParameterException](t, err)
		})
	}
}

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	_, v1 := srv.CreateSecret("db", `{"username":"app","password":"p1"}`)

	rot, err := c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{
		SecretId:      s("db"),
		RotationRules: &types.RotationRulesType{AutomaticallyAfterDays: aws.Int64(30)},
	})
	if err != nil {
		t.Fatal(err)
	}
	v2 := aws.ToString(rot.VersionId)
	if v2 == "" || v2 == v1 {
		t.Fatalf("RotateSecret VersionId = %q", v2)
	}
	if got := srv.Versions("db"); !equalVersions(got, map[string][]string{v1: {"AWSCURRENT"}, v2: {"AWSPENDING"}}) {
		t.Errorf("after RotateSecret: %v", got)
	}
	d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("db")})
	if err != nil {
		t.Fatal(err)
	}
	if !aws.ToBool(d.RotationEnabled) || d.RotationRules == nil || aws.ToInt64(d.RotationRules.AutomaticallyAfterDays) != 30 {
		t.Errorf("rotation settings: enabled %v rules %+v", aws.ToBool(d.RotationEnabled), d.RotationRules)
	}
	if d.LastRotatedDate != nil {
		t.Errorf("LastRotatedDate = %v before the rotation finished", d.LastRotatedDate)
	}
	if d.NextRotationDate == nil || d.NextRotationDate.Sub(*d.CreatedDate) != 30*24*time.Hour {
		t.Errorf("NextRotationDate = %v, created %v", d.NextRotationDate, d.CreatedDate)
	}

	// createSecret step: the pending version has no value yet.
	_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db"), VersionId: s(v2), VersionStage: s("AWSPENDING")})
	wantAs[*types.ResourceNotFoundException](t, err)
	_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db"), VersionStage: s("AWSPENDING")})
	wantAs[*types.ResourceNotFoundException](t, err)

	// A second rotation cannot start while this one is unfinished.
	_, err = c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: s("db")})
	wantAs[*types.InvalidRequestException](t, err)
	// But the same request again (an SDK retry) answers the same version.
	again, err := c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: s("db"), ClientRequestToken: s(v2)})
	if err != nil || aws.ToString(again.VersionId) != v2 {
		t.Errorf("replayed RotateSecret: %v, %v", err, again)
	}

	pw, err := c.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{ExcludeCharacters: s(`:/@"'\`)})
	if err != nil {
		t.Fatal(err)
	}
	pending := `{"username":"app","password":"` + *pw.RandomPassword + `"}`
	put, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: s("db"), ClientRequestToken: s(v2), SecretString: s(pending), VersionStages: []string{"AWSPENDING"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *put.VersionId != v2 || !slices.Equal(put.VersionStages, []string{"AWSPENDING"}) {
		t.Errorf("PutSecretValue filled %s with %v", *put.VersionId, put.VersionStages)
	}

	// setSecret / testSecret steps read AWSPENDING; AWSCURRENT is still v1.
	got, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db"), VersionStage: s("AWSPENDING")})
	if err != nil || *got.SecretString != pending {
		t.Fatalf("AWSPENDING after put: %v", err)
	}
	cur, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	if err != nil || *cur.VersionId != v1 {
		t.Fatalf("AWSCURRENT during rotation: %v %v", err, cur)
	}

	// finishSecret step.
	if _, err := c.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: s("db"), VersionStage: s("AWSCURRENT"), MoveToVersionId: s(v2), RemoveFromVersionId: s(v1),
	}); err != nil {
		t.Fatal(err)
	}
	cur, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	if err != nil || *cur.VersionId != v2 || *cur.SecretString != pending {
		t.Fatalf("AWSCURRENT after rotation: %v", err)
	}
	prev, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db"), VersionStage: s("AWSPREVIOUS")})
	if err != nil || *prev.VersionId != v1 {
		t.Fatalf("AWSPREVIOUS after rotation: %v", err)
	}
	d, _ = c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("db")})
	if d.LastRotatedDate == nil {
		t.Error("no LastRotatedDate after the rotation finished")
	}

	// AWSPENDING now shares the current version, so a new rotation may start.
	rot2, err := c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: s("db")})
	if err != nil {
		t.Fatalf("second rotation: %v", err)
	}
	if got := srv.Versions("db"); !equalVersions(got, map[string][]string{v1: {"AWSPREVIOUS"}, v2: {"AWSCURRENT"}, *rot2.VersionId: {"AWSPENDING"}}) {
		t.Errorf("after second RotateSecret: %v", got)
	}

	t.Run("not immediately", func(t *testing.T) {
		srv.CreateSecret("later", "x")
		out, err := c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{
			SecretId: s("later"), RotateImmediately: aws.Bool(false),
			RotationRules:     &types.RotationRulesType{ScheduleExpression: s("rate(10 days)")},
			RotationLambdaARN: s("arn:aws:lambda:us-east-1:123456789012:function:rotate"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if out.VersionId != nil || len(srv.Versions("later")) != 1 {
			t.Errorf("made a version: %v %v", out.VersionId, srv.Versions("later"))
		}
		d, _ := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("later")})
		if !aws.ToBool(d.RotationEnabled) || aws.ToString(d.RotationLambdaARN) == "" || aws.ToString(d.RotationRules.ScheduleExpression) != "rate(10 days)" {
			t.Errorf("settings not recorded: %+v", d)
		}
	})

	errCases := []struct {
		name string
		in   secretsmanager.RotateSecretInput
		code string
	}{
		{"unknown secret", secretsmanager.RotateSecretInput{SecretId: s("nope")}, "ResourceNotFoundException"},
		{"days out of range", secretsmanager.RotateSecretInput{SecretId: s("later"), RotationRules: &types.RotationRulesType{AutomaticallyAfterDays: aws.Int64(0)}}, "InvalidParameterException"},
		{"days and schedule", secretsmanager.RotateSecretInput{SecretId: s("later"), RotationRules: &types.RotationRulesType{AutomaticallyAfterDays: aws.Int64(3), ScheduleExpression: s("rate(3 days)")}}, "InvalidParameterException"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.RotateSecret(ctx, &tc.in)
			wantCode(t, err, tc.code)
		})
	}
}

// TestRotationHook runs the four steps of the AWS single-user rotation
// function from the OnRotate hook, through the SDK, as a Lambda would.
func TestRotationHook(t *testing.T) {
	t.Parallel()
	type call struct{ secretID, versionID string }
	calls := make(chan call, 1)
	srv, c := start(t, awssmtest.WithOnRotate(func(secretID, versionID string) {
		calls <- call{secretID, versionID}
	}))
	ctx := t.Context()
	arn, v1 := srv.CreateSecret("db", "p1")

	rot, err := c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: s("db")})
	if err != nil {
		t.Fatal(err)
	}
	var got call
	select {
	case got = <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("OnRotate not called")
	}
	if got.secretID != arn || got.versionID != *rot.VersionId {
		t.Fatalf("OnRotate(%q, %q), want (%q, %q)", got.secretID, got.versionID, arn, *rot.VersionId)
	}
	srv.ResetCalls()

	// createSecret
	if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s(got.secretID), VersionStage: s("AWSCURRENT")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s(got.secretID), VersionId: s(got.versionID), VersionStage: s("AWSPENDING")})
	wantAs[*types.ResourceNotFoundException](t, err)
	if _, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s(got.secretID), ClientRequestToken: s(got.versionID), SecretString: s("p2"), VersionStages: []string{"AWSPENDING"}}); err != nil {
		t.Fatal(err)
	}
	// setSecret and testSecret
	for range 2 {
		if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s(got.secretID), VersionId: s(got.versionID), VersionStage: s("AWSPENDING")}); err != nil {
			t.Fatal(err)
		}
	}
	// finishSecret
	if _, err := c.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: s(got.secretID), VersionStage: s("AWSCURRENT"), MoveToVersionId: s(got.versionID), RemoveFromVersionId: s(v1)}); err != nil {
		t.Fatal(err)
	}

	if n := srv.CallsByStage("AWSCURRENT"); n != 1 {
		t.Errorf("CallsByStage(AWSCURRENT) = %d, want 1", n)
	}
	if n := srv.CallsByStage("AWSPENDING"); n != 3 {
		t.Errorf("CallsByStage(AWSPENDING) = %d, want 3", n)
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 4 {
		t.Errorf("Calls(GetSecretValue) = %d, want 4", n)
	}
}

func TestDeleteSecret(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()

	t.Run("force", func(t *testing.T) {
		arn, _ := srv.CreateSecret("gone", "x")
		out, err := c.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: s(arn), ForceDeleteWithoutRecovery: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		if *out.ARN != arn || out.DeletionDate == nil {
			t.Errorf("DeleteSecret = %+v", out)
		}
		for _, id := range []string{"gone", arn} {
			_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s(id)})
			wantAs[*types.ResourceNotFoundException](t, err)
		}
		if srv.Versions("gone") != nil {
			t.Error("Versions of a deleted secret")
		}
		// The name is free again, with a new ARN.
		arn2, _ := srv.CreateSecret("gone", "y")
		if arn2 == arn {
			t.Error("re-created secret has the old ARN")
		}
		_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s(arn)})
		wantAs[*types.ResourceNotFoundException](t, err)
	})

	t.Run("recovery window", func(t *testing.T) {
		srv.CreateSecret("sched", "x")
		out, err := c.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: s("sched"), RecoveryWindowInDays: aws.Int64(7)})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(*out.DeletionDate); d < 6*24*time.Hour || d > 8*24*time.Hour {
			t.Errorf("DeletionDate in %v, want about 7 days", d)
		}
		_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("sched")})
		wantAs[*types.InvalidRequestException](t, err)
		d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("sched")})
		if err != nil || d.DeletedDate == nil {
			t.Errorf("DescribeSecret: %v, DeletedDate %v", err, d)
		}
		_, err = c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: s("sched"), SecretString: s("y")})
		wantAs[*types.InvalidRequestException](t, err)
		_, err = c.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: s("sched")})
		wantAs[*types.InvalidRequestException](t, err)
		if _, err := c.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: s("sched"), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
			t.Errorf("force delete of a scheduled secret: %v", err)
		}
	})

	srv.CreateSecret("db", "x")
	errCases := []struct {
		name string
		in   secretsmanager.DeleteSecretInput
		code string
	}{
		{"unknown", secretsmanager.DeleteSecretInput{SecretId: s("nope"), ForceDeleteWithoutRecovery: aws.Bool(true)}, "ResourceNotFoundException"},
		{"force and window", secretsmanager.DeleteSecretInput{SecretId: s("db"), ForceDeleteWithoutRecovery: aws.Bool(true), RecoveryWindowInDays: aws.Int64(7)}, "InvalidParameterException"},
		{"window too short", secretsmanager.DeleteSecretInput{SecretId: s("db"), RecoveryWindowInDays: aws.Int64(3)}, "InvalidParameterException"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.DeleteSecret(ctx, &tc.in)
			wantCode(t, err, tc.code)
		})
	}
}

func TestGoMethods(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()

	arn, v1 := srv.CreateSecret("db", "one")
	if !arnRE.MatchString(arn) {
		t.Errorf("ARN %q", arn)
	}
	v2 := srv.PutValue("db", "two", "AWSPENDING", "CUSTOM")
	if got := srv.Versions("db"); !equalVersions(got, map[string][]string{v1: {"AWSCURRENT"}, v2: {"AWSPENDING", "CUSTOM"}}) {
		t.Errorf("Versions = %v", got)
	}
	srv.MoveStage("db", "AWSCURRENT", v2)
	if got := srv.Versions("db"); !equalVersions(got, map[string][]string{v1: {"AWSPREVIOUS"}, v2: {"AWSCURRENT", "AWSPENDING", "CUSTOM"}}) {
		t.Errorf("after MoveStage: %v", got)
	}
	// MoveStage may remove AWSCURRENT, which the API refuses, to model a
	// store without a current version.
	srv.MoveStage("db", "AWSCURRENT", "")
	_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantAs[*types.ResourceNotFoundException](t, err)

	srv.Delete("db")
	srv.Delete("db") // no-op
	if srv.Versions("db") != nil {
		t.Error("Versions after Delete")
	}

	for name, f := range map[string]func(){
		"CreateSecret twice": func() { srv.CreateSecret("dup", "x"); srv.CreateSecret("dup", "x") },
		"PutValue unknown":   func() { srv.PutValue("nope", "x") },
		"MoveStage unknown":  func() { srv.MoveStage("dup", "AWSCURRENT", token("nope")) },
		"InjectFault bad op": func() { srv.InjectFault("ListSecrets", awssmtest.Fault{}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

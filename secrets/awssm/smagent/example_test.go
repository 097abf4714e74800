package smagent_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/smagent"
)

// In production the source is smagent.New("prod/app/db"): the agent at
// http://localhost:2773, its token from AWS_TOKEN, /var/run/awssmatoken or
// AWS_SESSION_TOKEN. Here a local stand-in for the agent, in front of a
// local Secrets Manager endpoint, plays its part.
func Example() {
	ctx := context.Background()
	srv := awssmtest.NewServer()
	defer srv.Close()
	srv.CreateSecret("prod/app/db", `{"engine":"postgres","host":"db.internal","port":5432,"username":"app","password":"s3cr3t","dbname":"app"}`)
	agent := srv.NewAgent().Start()
	defer agent.Close()

	src, err := smagent.New("prod/app/db", smagent.WithEndpoint(agent.URL()), smagent.WithToken(agent.Token()))
	if err != nil {
		log.Fatal(err)
	}
	connector, err := rotating.NewConnector("dbname=app sslmode=require", src)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector) // the first login makes the first Fetch
	defer db.Close()

	cred, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src)
	fmt.Println("username:", cred.Username, "host:", cred.Host)
	// Output:
	// aws-secretsmanager-agent prod/app/db
	// username: app host: db.internal
}

// During an AWS single-user rotation, between setSecret and finishSecret,
// the database refuses the password of AWSCURRENT. The connector's Fetch
// gets it from the agent's cache, and FetchPending reads AWSPENDING, which
// the first process of the host brings into the agent's cache for the
// others: one call to Secrets Manager for the host.
func ExampleSource_FetchPending() {
	ctx := context.Background()
	srv := awssmtest.NewServer()
	defer srv.Close()
	srv.CreateSecret("prod/app/db", `{"username":"app","password":"old-password"}`)
	agent := srv.NewAgent().Start()
	defer agent.Close()
	var processes []*smagent.Source
	for range 3 {
		src, err := smagent.New("prod/app/db", smagent.WithEndpoint(agent.URL()), smagent.WithToken(agent.Token()))
		if err != nil {
			log.Fatal(err)
		}
		processes = append(processes, src)
	}
	current, err := processes[0].Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}

	// createSecret and setSecret: the database now wants new-password.
	srv.PutValue("prod/app/db", `{"username":"app","password":"new-password"}`, awssmtest.StagePending)
	agent.ResetStats()
	for i, src := range processes {
		stale, err := src.Fetch(ctx) // what the connector calls first
		if err != nil {
			log.Fatal(err)
		}
		pending, err := src.FetchPending(ctx, stale)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("process %d: Fetch is the old credential: %v; FetchPending is the new one: %v\n",
			i, stale.SameLogin(current), pending.Password == "new-password")
	}
	st := agent.Stats()
	fmt.Printf("agent requests %d, refreshNow %d, GetSecretValue calls to Secrets Manager %d\n",
		st.Requests, st.RefreshNow, st.GetSecretValueCalls)
	// Output:
	// process 0: Fetch is the old credential: true; FetchPending is the new one: true
	// process 1: Fetch is the old credential: true; FetchPending is the new one: true
	// process 2: Fetch is the old credential: true; FetchPending is the new one: true
	// agent requests 6, refreshNow 0, GetSecretValue calls to Secrets Manager 1
}

// Package recipes shows the rotating Connector under the Go database tools
// people already use: gorm, sqlx, bun, ent, goose, golang-migrate and
// sqlc-generated code. Each takes a *sql.DB, so sql.OpenDB(connector) plugs
// in; each has a trap, shown in its Example and in docs/recipes.md.
//
// The package has no API: the recipes are its Example functions (compiled,
// not run, since they need a server and a store), and its tests run the
// same code against a real PostgreSQL server with the credential rotated
// in the middle of the work, over lib/pq and over pgx, and fail on any
// failed operation. It is a module of its own, so that the library's users
// do not inherit these tools.
//
// The generated code is committed: package ent (from ent/schema) and
// packages sqlc/orders and sqlc/orderspgx (from sqlc/sqlc.yaml). go generate
// in this directory regenerates it.
package recipes

//go:generate go run entgo.io/ent/cmd/ent@v0.14.5 generate ./ent/schema
//go:generate go run github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1 generate -f sqlc/sqlc.yaml

// Package orderspgx is the code sqlc v1.31.1 generates for ../schema.sql
// and ../query.sql with sql_package pgx/v5: New takes a DBTX, which a
// *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or pgx.Tx is. This file is the
// only one written by hand; go generate in the recipes directory
// regenerates the others.
package orderspgx

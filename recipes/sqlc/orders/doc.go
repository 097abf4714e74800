// Package orders is the code sqlc v1.31.1 generates for ../schema.sql and
// ../query.sql with sql_package database/sql: New takes a DBTX, which a
// *sql.DB (from sql.OpenDB(connector)), *sql.Conn or *sql.Tx is. This file
// is the only one written by hand; go generate in the recipes directory
// regenerates the others.
package orders

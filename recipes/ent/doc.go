// Package ent is the code ent v0.14.5 generates for the schema in ./schema
// (go generate in the recipes directory regenerates it). This file is the
// only one written by hand.
package ent

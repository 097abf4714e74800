// Package schema is the ent schema of the ent recipe: one entity, Order,
// from which the code in package ent is generated.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Order is a row the recipe's workers insert while the credential rotates.
type Order struct {
	ent.Schema
}

// Fields of the Order: which worker inserted it, and its sequence number
// there; the id is ent's own.
func (Order) Fields() []ent.Field {
	return []ent.Field{
		field.Int("worker"),
		field.Int("seq"),
	}
}

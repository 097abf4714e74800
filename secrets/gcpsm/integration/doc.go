// Package gcpsmintegration holds the tests that run the rotating connector
// over a gcpsm source against a real PostgreSQL server started by the tests
// and a local Secret Manager (gcpsmtest) reached by the real gRPC client:
// rotations under load in both orders (the store first, the database
// first) and through both drivers, the store's faults while the cached
// credential works, and the errors once it no longer does.
package gcpsmintegration

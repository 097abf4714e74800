module github.com/pgrotate/rotating

go 1.26.8

require (
	github.com/DATA-DOG/go-sqlmock v1.5.2 // indirect
	github.com/lib/pq v1.12.3 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
)

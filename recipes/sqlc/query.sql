-- name: CreateOrder :one
INSERT INTO orders (worker, seq) VALUES ($1, $2) RETURNING *;

-- name: CountOrders :one
SELECT count(*) FROM orders;

-- name: ListWorkerOrders :many
SELECT * FROM orders WHERE worker = $1 ORDER BY seq;

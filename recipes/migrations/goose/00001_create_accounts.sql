-- +goose Up
CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL);

-- +goose Down
DROP TABLE accounts;

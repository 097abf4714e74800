-- +goose Up
CREATE UNIQUE INDEX accounts_email ON accounts (email);

-- +goose Down
DROP INDEX accounts_email;

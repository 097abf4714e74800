-- +goose Up
INSERT INTO accounts (name, email) VALUES ('ada', 'ada@example.com'), ('alan', 'alan@example.com'), ('grace', 'grace@example.com');

-- +goose Down
DELETE FROM accounts WHERE email IN ('ada@example.com', 'alan@example.com', 'grace@example.com');

-- The table of the sqlc recipe, created by the test (sqlc reads it to
-- generate the code; it does not run it).
CREATE TABLE orders (
    id     bigserial PRIMARY KEY,
    worker integer NOT NULL,
    seq    integer NOT NULL
);

CREATE UNIQUE INDEX accounts_email ON accounts (email);

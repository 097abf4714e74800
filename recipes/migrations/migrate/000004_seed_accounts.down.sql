DELETE FROM accounts WHERE email IN ('ada@example.com', 'alan@example.com', 'grace@example.com');

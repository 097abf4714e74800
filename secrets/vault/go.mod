module github.com/pgrotate/rotating/secrets/vault

go 1.26.0

require github.com/pgrotate/rotating v0.0.0

// Released together with the library; until a release pins versions, it
// builds against the library in this repository.
replace github.com/pgrotate/rotating => ../..

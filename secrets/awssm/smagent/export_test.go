package smagent

// WithTokenDiscovery exposes withTokenDiscovery to the package's external
// tests.
var WithTokenDiscovery = withTokenDiscovery

// ParseAnswer exposes parseAnswer to the fuzz test.
var ParseAnswer = parseAnswer

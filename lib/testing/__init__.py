"""Small local servers that speak real protocols, for tests and benchmarks."""

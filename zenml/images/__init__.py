"""zenml's image catalogue: specs, locks, wheelhouses, builds and self-tests."""

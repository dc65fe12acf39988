"""HTTP layer: schemas, routes, errors, auth, limits (knows the runtime, never tensors)."""

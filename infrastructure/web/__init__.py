"""The HTTP application: factory, cross-cutting middleware, problem details and health."""

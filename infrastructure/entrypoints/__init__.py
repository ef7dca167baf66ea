"""The composition root: the one package that knows every side and wires them together.

The CLI, the role table, the HTTP app factory and its route list live here. Nothing else in
`infrastructure/` imports `commands`, `projections` or `read_api`; an import-linter
contract keeps it so.
"""

"""Personal data at rest: each data subject's fields sealed under a key of its own, data keys
wrapped by a master key, and keyed hashes where a lookup needs an identifier."""

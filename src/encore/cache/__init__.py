"""The artefact cache every floor shares: content-hashed, checksummed, atomically written artefacts
(:mod:`encore.cache.artifacts`) and the cache-only mode of sweep jobs that may read them but never compute
(:mod:`encore.cache.cache_only`). A leaf: nothing here imports another folder."""

"""Fitting models to hardware before loading them: architecture records, memory, placement, loading, distributed
launch settings. A leaf: nothing here imports ``encore.rm``, ``encore.rating`` or the pipeline."""

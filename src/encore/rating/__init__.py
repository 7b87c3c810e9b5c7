"""Rule ratings ψ_k in [0, 1] for every (pair, side, rule): the engine that caches and resumes them
(:mod:`encore.rating.engine`), the raters (``hf``, ``vllm``, ``remote``, ``embedding``) with their tokens (the prompts
themselves are the paper's, :mod:`encore.prompts`), and ratings that already exist (``given``, ``columns``, ``file``)."""

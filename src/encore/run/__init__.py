"""The machinery that stages a run: the pipeline that wires the stages together (:mod:`encore.run.pipeline`), the
study and evaluation stages, settings checked before anything runs, a job's command and names, unique run
directories, the summary a run prints, and tracking (the only wandb import). Above every other folder but ``node/``."""

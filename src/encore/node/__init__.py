"""The machinery that plans and fills a node: the preflight plan of a whole experiment and its costs
(:mod:`encore.node.plan`), rater copies over a node's GPUs (:mod:`encore.node.replicas`) and the first GPU hour
(:mod:`encore.node.gpu_check`). The top floor: it reads the pipeline's build, nothing imports it."""

"""The multi-head reward model: backbone, heads, the two trainers (``train=probe``, ``train=finetune``), checkpoints
and export."""

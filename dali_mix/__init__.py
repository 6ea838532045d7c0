"""dali-mix: mixed-sample data augmentation inside NVIDIA DALI pipelines.

Import this inside your own ``@pipeline_def(enable_conditionals=True)`` and call the mixers on
DataNodes; see README.md.
"""
__version__ = "0.1.0"

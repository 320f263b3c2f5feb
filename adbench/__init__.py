"""adbench: benchmark, evaluation and training harness for MLLMs in industrial anomaly detection.

Importing this package is cheap on purpose: it pulls in no torch, transformers or
openai. Heavy modules are imported by the adapters and tasks that need them, when
the registry builds them.
"""

__version__ = "0.1.0"

"""arcsynth: ARC-AGI by program synthesis with open-weights language models."""

__version__ = "0.1.0"

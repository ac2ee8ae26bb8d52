"""The agent's benchmarks and the test doubles they drive.

- :mod:`agent.benchmarks.agent`: raw transformers tokens/s against the agent's (``bench agent``);
- :mod:`agent.benchmarks.pipeline` with :mod:`agent.benchmarks.server_double`, an OpenAI-compatible
  server double: can the agent keep up with a fast model (``bench pipeline``);
- :mod:`agent.benchmarks.search` with :mod:`agent.benchmarks.recolour_model`, a scripted model:
  solved tasks per 1,000 programs for each search strategy (``bench search``).
"""

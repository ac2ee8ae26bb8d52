"""The solver: model backends, the sample-verify-refine loop, voting, runs."""

"""qvl-agent: the agent loop, prompts, parsing, history, trajectories and the CLI."""

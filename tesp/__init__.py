"""tesp: distributed meta-reinforcement learning on Ray."""

"""Shared neural-network maths: MLP builder and initialisers, distributions, observation
normalisation, per-task parameter broadcasting. No RLlib here; everything above builds on it."""

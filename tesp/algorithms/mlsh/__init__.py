from tesp.algorithms.mlsh.mlsh import MLSHAlgorithm, MLSHConfig

__all__ = ["MLSHAlgorithm", "MLSHConfig"]

from tesp.algorithms.maesn.maesn import MAESN, MAESNConfig

__all__ = ["MAESN", "MAESNConfig"]

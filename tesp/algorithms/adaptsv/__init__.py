from tesp.algorithms.adaptsv.adaptsv import AdaptSV, AdaptSVConfig

__all__ = ["AdaptSV", "AdaptSVConfig"]

from tesp.algorithms.mime.mime import MIME, MIMEConfig

__all__ = ["MIME", "MIMEConfig"]

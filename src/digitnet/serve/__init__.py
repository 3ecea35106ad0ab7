"""The HTTP service: a FastAPI app that serves one trained model and a page to draw digits."""

from digitnet.serve.app import create_app
from digitnet.serve.limits import Limits

__all__ = ["Limits", "create_app"]

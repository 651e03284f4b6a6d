"""The local event router: executes the Knative manifests in knative/ on one machine (see router.py)."""

from eventing.router.router import Router

__all__ = ["Router"]

"""sentry: run Linux programs in a sandbox whose every syscall a Python kernel answers.

    from sentry import Sandbox, Limits, Result, Mount

The embedding API (sentry/api.py) loads on first use of one of these names: `sentry run`
starts through this package and must not pay for it.
"""

__all__ = ["Sandbox", "Limits", "Result", "Mount"]


def __getattr__(name):
    if name in __all__:
        from sentry import api
        return getattr(api, name)
    raise AttributeError(f"module 'sentry' has no attribute {name!r}")

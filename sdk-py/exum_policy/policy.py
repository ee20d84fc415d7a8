"""A routing policy: subclass :class:`Policy`, and export it from the
component's module (``app.py``) with :func:`export_policy`::

    class Pilot(Policy):
        def route(self, req):
            return Decision.standard()

    Handler = export_policy(Pilot)

componentize-py looks for the name ``Handler`` in that module.
"""

from typing import Optional, Type, Union

from ._bindings import Err, exports, types
from .decision import DECISION_CASES, Decision
from .request import Request

__all__ = ["Policy", "export_policy"]


class Policy:
    """A routing policy. Override :meth:`route`, and :meth:`init` and
    :meth:`on_failure` if their defaults do not do.

    One instance serves every call of a component instance, so what
    :meth:`init` keeps on ``self`` is there for :meth:`route`.
    """

    def init(self, config: str) -> Optional[str]:
        """Called once per instance with the tenant's ``policy_config`` string,
        before any other call. Return ``None`` to accept it; return an error
        message, or raise, to refuse this version of the policy. The default
        accepts any configuration."""
        return None

    def route(self, req: Request) -> "types.Decision":
        """Decide where a new request goes."""
        raise NotImplementedError(f"{type(self).__name__}.route")

    def on_failure(self, req: Request, failure: types.Failure) -> "types.Decision":
        """Every target of a forward failed: decide what happens next. The
        default lets the router's standard algorithm decide (voice-mail
        rerouting, or the best response)."""
        return Decision.standard()


def export_policy(policy: Union[Type[Policy], Policy]) -> Type[exports.Handler]:
    """The class componentize-py exports as the component's ``handler``, for
    ``Handler = export_policy(MyPolicy)`` in the component's module.

    ``policy`` is a :class:`Policy` subclass, made once with no arguments on
    the first call, or an instance. The returned class takes the contract's
    records, wraps the request in :class:`Request`, and checks that a
    decision is returned; ``init`` returning a message or raising makes the
    component's ``init`` answer ``Err(message)``. Its instances may be many
    (componentize-py makes one per call); the policy is one.
    """
    holder = {}

    def instance() -> Policy:
        if "policy" not in holder:
            holder["policy"] = policy() if isinstance(policy, type) else policy
        return holder["policy"]

    name = policy.__name__ if isinstance(policy, type) else type(policy).__name__

    class Handler(exports.Handler):
        def init(self, config: str) -> None:
            try:
                result = instance().init(config)
            except Err:
                raise
            except Exception as e:  # noqa: BLE001 - any failure refuses the configuration
                raise Err(str(e) or type(e).__name__) from e
            if result is None:
                return None
            if isinstance(result, str):
                raise Err(result)
            raise Err(f"{name}.init returned {result!r}: None accepts the configuration, a message refuses it")

        def route(self, req: types.Request) -> "types.Decision":
            return _checked(instance().route(Request(req)), name, "route")

        def on_failure(self, req: types.Request, failure: types.Failure) -> "types.Decision":
            return _checked(instance().on_failure(Request(req), failure), name, "on_failure")

    Handler.__qualname__ = Handler.__name__ = "Handler"
    Handler.__doc__ = f"The component's handler: the policy {name}."
    Handler.policy = staticmethod(instance)
    return Handler


def _checked(decision: object, name: str, method: str) -> "types.Decision":
    """``decision`` as the contract's variant case componentize-py lowers: the
    very class (a subclass is refused by the lowering), else a ``TypeError``
    naming what was returned."""
    kind = type(decision)
    if kind in DECISION_CASES:
        return decision
    for case in DECISION_CASES:
        if isinstance(decision, case):
            return case(decision.value) if case is not types.Decision_Standard else case()
    raise TypeError(
        f"{name}.{method} returned {decision!r}, not a decision: return Decision.forward(...), "
        "Decision.reject(...), Decision.redirect(...) or Decision.standard()"
    )

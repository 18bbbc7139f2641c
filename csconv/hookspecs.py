"""The hooks a csconv plugin can implement."""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("csconv")
hookimpl = HookimplMarker("csconv")


@hookspec
def register_sinks(register):
    """Register output formats: call ``register(SinkClass)`` once per csconv.sinks.base.Sink subclass."""

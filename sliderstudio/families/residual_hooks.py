"""ControlNet residuals added to an unmodified diffusers transformer's block outputs, for one call at a time.

diffusers' AuraFlow and HiDream transformers take no ControlNet residuals, while the transformers
SimpleTuner trains ControlNets with add one residual after each block. Forking the transformer would
tie us to one diffusers version; forward hooks on its blocks give the same sum without touching it.
The hooks live only for the call they were installed for (a context manager), so the transformer
outside a ControlNet run, a plain render, or another family's use of it never sees them.

`around_each_call` serves pipelines that call the transformer themselves (every denoising step):
it installs a call's residual hooks from the call's own inputs and removes them when it returns.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Callable, Iterator, Sequence

from torch import nn

OutputEdit = Callable[[Any], Any]   # a block's output → that output with the residual added


@contextmanager
def block_residuals(edits: Sequence[tuple[nn.Module, OutputEdit]]) -> Iterator[None]:
    """While inside, each block's output is replaced by `edit(output)`; the hooks go on exit, raise or not."""
    handles = [block.register_forward_hook(_replacing(edit)) for block, edit in edits]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _replacing(edit: OutputEdit) -> Callable[[nn.Module, Any, Any], Any]:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        return edit(output)

    return hook


CallContext = Callable[[tuple, dict], AbstractContextManager]


@contextmanager
def around_each_call(module: nn.Module, context_for: CallContext) -> Iterator[None]:
    """While inside, every call of `module` runs within `context_for(args, kwargs)` of that call.

    The context is entered by a pre-hook and left by a post-hook; one left open by a forward that
    raised is closed on exit, so no hook outlives this block.
    """
    open_calls: list[ExitStack] = []

    def before(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        stack = ExitStack()
        stack.enter_context(context_for(args, kwargs))
        open_calls.append(stack)

    def after(mod: nn.Module, args: tuple, output: Any) -> None:
        if open_calls:
            open_calls.pop().close()

    pre = module.register_forward_pre_hook(before, with_kwargs=True)
    post = module.register_forward_hook(after)
    try:
        yield
    finally:
        pre.remove()
        post.remove()
        while open_calls:
            open_calls.pop().close()

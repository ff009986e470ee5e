"""Running out of memory is the machine's state, not a bug: one retry on a GPU, then an error
that says so.

A farm GPU is often shared, and PyTorch's caching allocator can hold fragmented blocks after
a failed allocation, so the first ``OutOfMemoryError`` of a frame frees the cache and runs
the frame again. A second one, or the host's ``MemoryError``, becomes
:class:`~nuke_hdmatt.errors.OutOfMemory`: that frame fails with a line naming the device,
what was free and what to change, and a shot goes on with its next frame.
"""

from __future__ import annotations

import torch

from ..errors import OutOfMemory

GIB = 1024 ** 3


# torch's CPU allocator raises a plain RuntimeError (numpy's, a MemoryError)
_HOST_ALLOCATOR = "DefaultCPUAllocator: can't allocate memory"


def guarded(device: torch.device, what: str, run):
    """``run()``, retried once after freeing the CUDA cache when the GPU runs out of memory;
    out of memory again (or on the host) raises :class:`OutOfMemory` naming ``what``."""
    for _try in range(2):
        try:
            return run()
        except torch.OutOfMemoryError:
            if device.type != "cuda":
                raise OutOfMemory(_host_message(what)) from None
        except MemoryError:
            raise OutOfMemory(_host_message(what)) from None
        except RuntimeError as exc:
            if _HOST_ALLOCATOR not in str(exc):
                raise
            raise OutOfMemory(_host_message(what)) from None
        # outside the handler: the failed attempt's tensors, which its traceback held, are
        # garbage now and the cache can hand their blocks back
        torch.cuda.empty_cache()
    raise OutOfMemory(_gpu_message(device, what))


def _gpu_message(device: torch.device, what: str) -> str:
    try:
        free, total = torch.cuda.mem_get_info(device)
        held = f" ({free / GIB:.1f} of {total / GIB:.1f} GiB free)"
    except RuntimeError:
        held = ""
    return (f"out of GPU memory on {device}{held} for {what}, also after a retry: another "
            f"process may hold it; give --device cpu, or a smaller --patch")


def _host_message(what: str) -> str:
    return (f"out of memory (RAM) for {what}: run fewer jobs on this machine at once, or give "
            f"a smaller --patch")

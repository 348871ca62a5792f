"""Where the GPU waits for the host: idle time between kernels, charged to the host-side stage that was running.

Used by profile_prefill.py --idle. Stages are ``torch.profiler.record_function`` ranges put around modules and
functions of the user's path (:class:`Labels`); kernels are the profiler's device events. Every moment inside the
profiled call where no kernel runs is charged to the innermost stage open on the host at that moment ("self"
idle: a layer's idle time excludes what its norms or MLP already got), or to "(no stage)". A stage with much idle
time is where host work (Python, launches, synchronisation) sits on the critical path; a stage with little is
GPU-bound, and making its host side faster would buy nothing.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of intervals as sorted, disjoint intervals."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def gaps(busy: list[Interval], span: Interval) -> list[Interval]:
    """The parts of ``span`` outside the merged ``busy`` intervals."""
    out, cursor = [], span[0]
    for start, end in busy:
        if start > cursor:
            out.append((cursor, min(start, span[1])))
        cursor = max(cursor, end)
        if cursor >= span[1]:
            break
    if cursor < span[1]:
        out.append((cursor, span[1]))
    return [(a, b) for a, b in out if b > a]


def idle_by_stage(kernels: Iterable[Interval], stages: list[tuple[str, float, float]], span: Interval) -> dict:
    """GPU idle time inside ``span`` charged to the innermost open stage (stages must nest, as ranges of one
    thread do). Returns total, busy and idle time and ``idle_self`` {stage name: time}, in the inputs' unit."""
    idle = gaps(merge(kernels), span)
    points = sorted({p for a, b in idle for p in (a, b)} | {p for _, a, b in stages for p in (a, b)})
    starts, ends = defaultdict(list), defaultdict(list)
    for i, (name, a, b) in enumerate(stages):
        starts[a].append((b, i, name))
        ends[b].append(i)
    charged: dict[str, float] = defaultdict(float)
    stack: list[tuple[int, str]] = []
    g = 0
    for left, right in zip(points, points[1:]):
        for i in ends.get(left, ()):  # ends before starts at the same moment; close what closes here
            stack = [s for s in stack if s[0] != i]
        for _, i, name in sorted(starts.get(left, ()), reverse=True):  # outer (later end) first
            stack.append((i, name))
        while g < len(idle) and idle[g][1] <= left:
            g += 1
        if g < len(idle) and idle[g][0] <= left and right <= idle[g][1]:
            charged[stack[-1][1] if stack else "(no stage)"] += right - left
    total = span[1] - span[0]
    lost = sum(b - a for a, b in idle)
    return dict(total=total, busy=total - lost, idle=lost,
                idle_self=dict(sorted(charged.items(), key=lambda kv: -kv[1])))


def replace(owner: object, attribute: str, wrap: Callable[[Callable], Callable]) -> Callable[[], None]:
    """Sets ``owner.attribute`` (a module path such as "spatial_ttt.streaming", a class or an object) to
    wrap(original), where callers look it up; returns what undoes it (an instance's own attribute goes again, so
    its class's method shows)."""
    owner = importlib.import_module(owner) if isinstance(owner, str) else owner
    original = getattr(owner, attribute)
    had_own = attribute in vars(owner)
    setattr(owner, attribute, wrap(original))
    return lambda: setattr(owner, attribute, original) if had_own else delattr(owner, attribute)


def device_by_stage(
    launches: Iterable[tuple[float, float]], stages: list[tuple[str, float, float]]
) -> dict[str, float]:
    """Device time charged to the innermost stage open on the host when the work was issued: ``launches`` are
    (host time of an op, device time of the kernels it launched). Where idle time says whether the host holds the
    GPU up, this says which stage's work the GPU spends its time on. {stage name: time}, largest first."""
    launches = list(launches)
    points = [(a, 1, -b, i) for i, (_, a, b) in enumerate(stages)]  # at one moment: ends, then starts (outer first)
    points += [(b, 0, 0, i) for i, (_, a, b) in enumerate(stages)]
    points += [(t, 2, 0, -1 - j) for j, (t, _) in enumerate(launches)]
    charged: dict[str, float] = defaultdict(float)
    stack: list[int] = []
    for _, kind, _, i in sorted(points):
        if kind == 0:
            stack.remove(i)
        elif kind == 1:
            stack.append(i)
        else:
            charged[stages[stack[-1]][0] if stack else "(no stage)"] += launches[-1 - i][1]
    return dict(sorted(charged.items(), key=lambda kv: -kv[1]))


class Labels:
    """record_function ranges around modules (by forward hooks) and around functions and methods (by replacing
    them where they are looked up), removed by :meth:`remove`."""

    def __init__(self) -> None:
        self.open: dict[int, list] = defaultdict(list)
        self.undo: list = []

    def module(self, module: torch.nn.Module, name: str) -> None:
        def enter(m, args):
            scope = torch.profiler.record_function(name)
            scope.__enter__()
            self.open[id(m)].append(scope)

        def leave(m, args, out):
            self.open[id(m)].pop().__exit__(None, None, None)

        self.undo += [module.register_forward_pre_hook(enter).remove, module.register_forward_hook(leave).remove]

    def function(self, owner: object, attribute: str, name: str | None = None) -> None:
        """Labels ``owner.attribute`` (see :func:`replace`)."""
        def wrap(original: Callable) -> Callable:
            def labelled(*args, **kwargs):
                with torch.profiler.record_function(name or attribute):
                    return original(*args, **kwargs)
            return labelled

        self.undo.append(replace(owner, attribute, wrap))

    def remove(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo = []


def activities(cuda: bool) -> list[torch.profiler.ProfilerActivity]:
    """What the profiler records: the host, and the GPU's kernels where there is one."""
    return [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])


def profiled_intervals(
    prof: torch.profiler.profile, outer: str
) -> tuple[list[Interval], list[tuple[str, float, float]], Interval]:
    """Device kernels / copies, the labelled ranges (µs) and the span of the range named ``outer``. The profiler
    also puts every labelled range on the GPU's timeline (a "gpu_user_annotation" as long as the work launched in
    it): not device work, so left out (sessions 9-21 counted them as busy time, which hid all idle time)."""
    events = prof.events()
    kernels = [(e.time_range.start, e.time_range.end) for e in events
               if e.device_type != torch.autograd.DeviceType.CPU and not e.is_user_annotation]
    stages = [(e.name, e.time_range.start, e.time_range.end) for e in events
              if e.device_type == torch.autograd.DeviceType.CPU and e.name.startswith("stage: ")]
    span = next((a, b) for name, a, b in stages if name == outer)
    return kernels, stages, span


def launches(prof: torch.profiler.profile) -> list[tuple[float, float]]:
    """(host start, device time of its kernels) of every host op that launched device work (µs), as the profiler
    links kernels to the op that issued them."""
    return [(e.time_range.start, sum(k.duration for k in e.kernels)) for e in prof.events()
            if e.device_type == torch.autograd.DeviceType.CPU and e.kernels]

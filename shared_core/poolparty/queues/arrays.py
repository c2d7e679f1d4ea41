"""Array-index syntax and layout: which chunks go into which array submission, and the index lists
(``0-2,5,7-8``) that SLURM's ``--array`` and the worker's ``--claim`` speak. Imported on the compute
node: standard library only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ArrayPart:
    """One scheduler submission's worth of chunks: chunk = offset + index."""

    offset: int
    indices: tuple[int, ...]

    @property
    def chunks(self) -> list[int]:
        return [self.offset + i for i in self.indices]


def layout_array(chunks: Sequence[int], *, first_index: int, max_index: int | None,
                 contiguous: bool = False) -> list[ArrayPart]:
    """Split chunk ids into submissions whose array indices fit ``first_index..max_index``.

    Chunks are grouped in windows of the allowed index width (``offset`` = window start shifted by
    ``first_index``), so a resubmission of scattered chunks needs no extra file per submission.
    ``contiguous`` splits further into runs of consecutive indices (SGE ``-t`` takes only ranges).
    """
    if not chunks:
        return []
    width = None if max_index is None else max_index - first_index + 1
    groups: dict[int, list[int]] = {}
    for c in sorted(set(chunks)):
        window = 0 if width is None else c // width
        groups.setdefault(window, []).append(c)
    parts: list[ArrayPart] = []
    for window, members in sorted(groups.items()):
        offset = (0 if width is None else window * width) - first_index
        indices = [c - offset for c in members]
        if not contiguous:
            parts.append(ArrayPart(offset, tuple(indices)))
            continue
        run = [indices[0]]
        for i in indices[1:]:
            if i == run[-1] + 1:
                run.append(i)
            else:
                parts.append(ArrayPart(offset, tuple(run)))
                run = [i]
        parts.append(ArrayPart(offset, tuple(run)))
    return parts


def compress_indices(indices: Sequence[int]) -> str:
    """``[0,1,2,5,7,8]`` -> ``"0-2,5,7-8"`` (SLURM ``--array`` syntax)."""
    out: list[str] = []
    items = sorted(indices)
    start = prev = items[0]
    for i in items[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


def parse_indices(spec: str) -> list[int]:
    """``"0-2,5,7-8"`` -> ``[0, 1, 2, 5, 7, 8]`` (the array's index list, as submitted)."""
    out: list[int] = []
    for item in filter(None, spec.split(",")):
        lo, _, hi = item.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out

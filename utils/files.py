"""Writing outputs safely: a file replaced only once written in full, and outputs that never land on inputs."""

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, with the same suffix so that writers pick the same format, that replaces
    `path` only once written in full and synced: a failed or interrupted write (a full disk, a kill) leaves
    the earlier file whole and no half-written one. Several of these in one ExitStack replace their files only
    once every one is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{os.getpid()}-{path.name}")
    try:
        yield temporary
        _fsync(temporary)  # its bytes on disk before the name points to them: a power cut keeps one whole file
        os.replace(temporary, path)
        _fsync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_no_output_on_input(inputs: Mapping[str, str | Path | None],
                             outputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """ValueError naming both paths when an output would land on an input, or two outputs on one file.

    inputs: {what the user calls it (a flag, a key): path}; outputs: (what the user calls it, path) pairs, so
    that one flag may write several. None: not given. A path is a file or a folder (an output folder: the
    command writes into it). An output lands on an input when both are the same file (after `..` and symbolic
    links, or hard links: os.path.samefile), when it lies inside an input folder, or when an input lies inside
    it.
    """
    given_inputs = [(name, Path(path)) for name, path in inputs.items() if path is not None]
    given_outputs = [(name, Path(path)) for name, path in outputs if path is not None]
    for output_name, output in given_outputs:
        for input_name, input_ in given_inputs:
            if _same(output, input_) or _inside(input_, output):
                raise ValueError(f"{output_name} {output} would overwrite {input_name} {input_}: write the output "
                                 f"elsewhere")
            if _inside(output, input_):
                raise ValueError(f"{output_name} {output} would write into {input_name} {input_}: write the output "
                                 f"elsewhere")
    for k, (first_name, first) in enumerate(given_outputs):
        for second_name, second in given_outputs[k + 1:]:
            if _same(first, second):
                raise ValueError(f"{first_name} {first} and {second_name} {second} are the same file: give each "
                                 f"output its own path")


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _inside(inner: Path, outer: Path) -> bool:
    """`inner` lies strictly inside the folder `outer` (as the paths resolve)."""
    return outer.resolve() in inner.resolve().parents

"""Writing outputs safely: a file replaced only once written in full, and outputs that never land on inputs."""

import errno
import os
import shutil
import stat
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
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{os.getpid()}-{path.name}")
    try:
        yield temporary
        _fsync(temporary)  # its bytes on disk before the name points to them: a power cut keeps one whole file
        os.replace(temporary, path)
        _fsync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_failure(error: OSError) -> str:
    """Why a write failed, for a one-line message: "the disk is full" (ENOSPC, or a quota: EDQUOT), else the
    system's words (a C library's message, several lines for HDF5, on one)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return error.strerror or " ".join(str(error).split())


class NotARegularFileError(OSError):
    """An output's path is a FIFO, a device, a socket or a folder: outputs only ever replace regular files (as
    root, a replaced /dev/null would be the system's)."""


def check_replaceable(path: str | Path) -> None:
    """NotARegularFileError naming `path` when it exists and is not a regular file (links followed)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:  # absent (or unreachable: the write says why)
        return
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(f"{path} is {_kind(mode)}, not a regular file: give a file's path (outputs only "
                                   f"replace regular files)")


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_no_output_on_input(inputs: Mapping[str, str | Path | None],
                             outputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """ValueError naming both paths when an output would land on an input, or two outputs on one file; naming
    the output when it is a FIFO, a device or a socket (outputs only replace regular files).

    inputs: {what the user calls it (a flag, a key): path}; outputs: (what the user calls it, path) pairs, so
    that one flag may write several. None: not given. A path is a file or a folder (an output folder: the
    command writes into it). An output lands on an input when both are the same file (after `..` and symbolic
    links, or hard links: os.path.samefile), when it lies inside an input folder, or when an input lies inside
    it.
    """
    given_inputs = [(name, Path(path)) for name, path in inputs.items() if path is not None]
    given_outputs = [(name, Path(path)) for name, path in outputs if path is not None]
    for output_name, output in given_outputs:
        if not output.is_dir():  # an output folder is written into, not replaced
            try:
                check_replaceable(output)
            except NotARegularFileError as error:
                raise ValueError(f"{output_name} {error}") from None
        for input_name, input_ in given_inputs:
            if same_file(output, input_) or lies_inside(input_, output):
                raise ValueError(f"{output_name} {output} would overwrite {input_name} {input_}: write the output "
                                 f"elsewhere")
            if lies_inside(output, input_):
                raise ValueError(f"{output_name} {output} would write into {input_name} {input_}: write the output "
                                 f"elsewhere")
    for k, (first_name, first) in enumerate(given_outputs):
        for second_name, second in given_outputs[k + 1:]:
            if same_file(first, second):
                raise ValueError(f"{first_name} {first} and {second_name} {second} are the same file: give each "
                                 f"output its own path")


def same_file(a: Path, b: Path) -> bool:
    """`a` and `b` are one file or folder: the same path after `..` and symbolic links, or hard links."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def lies_inside(inner: Path, outer: Path) -> bool:
    """`inner` lies strictly inside the folder `outer` (as the paths resolve)."""
    return outer.resolve() in inner.resolve().parents


class ForeignFolderError(FileExistsError):
    """A command was about to write into a folder that holds files it did not make."""


def check_own_folder(folder: str | Path, markers: Iterable[str], writer: str) -> None:
    """ForeignFolderError naming `folder` unless it is absent, empty, or holds one of `markers` (the files by
    which `writer` knows a folder it wrote): generators and preparers write only over what they made, never
    over real data kept in the same place (LoFTR's MegaDepth index in data/megadepth)."""
    folder, markers = Path(folder), list(markers)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ForeignFolderError(f"{folder} is a file, not a folder: choose a new or empty folder")
    if any((folder / marker).is_file() for marker in markers) or next(folder.iterdir(), None) is None:
        return
    raise ForeignFolderError(f"{folder} is not empty and holds no {' or '.join(markers)}: {writer} would write over "
                             f"files it did not make; choose a new or empty folder")


@contextmanager
def removed_on_failure(folder: str | Path) -> Iterator[None]:
    """What the block adds under `folder` (files, links, folders) is removed again when it raises (a full
    disk, Ctrl-C, bad input found late), and `folder` itself with the parents the block made for it: a failed
    run leaves no partial output. Files that were there before stay, rewritten or not."""
    folder = Path(folder)
    existed = folder.exists()
    before = set(_tree(folder)) if existed else set()
    made = folder  # the outermost of folder and its missing parents
    while not existed and not made.parent.exists() and made.parent != made:
        made = made.parent
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(made, ignore_errors=True)
        else:
            for path in sorted(set(_tree(folder)) - before, key=lambda p: len(p.parts), reverse=True):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def _tree(folder: Path) -> Iterator[Path]:
    """Every path under `folder`, links not followed."""
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            yield Path(parent) / name

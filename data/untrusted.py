"""Reading files that come from elsewhere without running what they hold or reading what they do not hold.

LoFTR's scene-info files are pickled dicts under a `.npz` name, and index archives (`np.savez`) may hold
object arrays, which numpy stores pickled too. Plain `pickle.load` calls whatever a pickle names, so a file
could run a shell command. Here pickles are read by an unpickler that builds only what these formats hold:
dicts, lists, tuples, sets, strings, bytes, numbers, numpy arrays, dtypes and scalars. Anything else is an
`UntrustedPickleError` naming the file and the refused global; `trusted=True` (a dataset's or benchmark's
`trust_index`) reads with plain pickle, for files you made yourself with other objects inside.

Small text inputs (a ground truth, a label file) are read by `read_small_text`: regular files only (/dev/zero
or a pipe never ends), and no more bytes than their format can need.
"""

import codecs
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core.multiarray import _reconstruct, scalar  # what numpy's pickles of arrays and scalars call
from numpy._core.numeric import _frombuffer  # arrays pickled with protocol 5

NPY_MAGIC = b"\x93NUMPY"
# The most an archive member may expand: np.savez_compressed shrinks index arrays (pair indices, scores,
# intrinsics) 2-10x; a zip bomb declares 1000x.
MAX_EXPANSION = 64

# (module, name) as pickles name them -> the object; numpy < 2 named its core `numpy.core`
_ALLOWED_GLOBALS = {
    **{("builtins", kind.__name__): kind for kind in (dict, list, tuple, set, frozenset, complex)},
    ("_codecs", "encode"): codecs.encode,  # bytes under pickle protocols 0-2 (an array's data, say)
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): scalar for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in ("numpy.core", "numpy._core")},
}


class UntrustedPickleError(ValueError):
    """A pickle in an index file names a global beyond plain data (a function, a class): possibly code."""


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, stream, path: Path):
        super().__init__(stream)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UntrustedPickleError(f"{self.path}: refuses to unpickle {module}.{name} (pickled code?); if you "
                                       f"trust the file, set trust_index=true")
        return _ALLOWED_GLOBALS[(module, name)]


def _unpickle(stream: io.BytesIO, path: Path, trusted: bool) -> Any:
    """The object pickled in `stream`. Python's unpickler allocates the length a bytes opcode declares before
    it reads them: a length beyond the machine is a MemoryError, named here; one within it stays virtual
    memory, never written, since the in-memory stream ends at the file's end ("pickle data was truncated")."""
    try:
        return (pickle.Unpickler(stream) if trusted else _DataUnpickler(stream, path)).load()
    except MemoryError:
        raise ValueError(f"{path}: a pickled object declares more bytes than the file holds (truncated or "
                         f"forged)") from None


def _read_npy(stream: io.BytesIO, path: Path, name: str, trusted: bool) -> np.ndarray:
    """The array of an in-memory `.npy` file (`name`: its member in an archive, or "" alone); an object
    array's pickle goes through the same unpickler. The shape its header declares must fit in the bytes that
    follow, checked before numpy allocates it: a 100-byte file may declare 75 GB."""
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    if dtype.hasobject:  # numpy writes the whole array as one pickle right after the header
        array = _unpickle(stream, path, trusted)
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{path}: an object array member holds a {type(array).__name__}, not an array")
        return array
    declared, held = math.prod(shape) * dtype.itemsize, len(stream.getbuffer()) - stream.tell()
    if declared > held:
        raise ValueError(f"{path}: array {name or 'of the file'} declares shape {shape} of {dtype} ({declared} "
                         f"bytes) but the file holds {held}: truncated or forged")
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _member_bytes(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> bytes:
    """The bytes of an archive member, refused before they are inflated when it declares more than
    MAX_EXPANSION times what it stores (a zip bomb)."""
    if member.file_size > MAX_EXPANSION * max(member.compress_size, 1):
        raise ValueError(f"{path}: archive member {member.filename} declares {member.file_size} bytes from "
                         f"{member.compress_size} compressed, more than {MAX_EXPANSION}x: not an index numpy wrote")
    chunks = []
    with archive.open(member) as handle:
        # in chunks: read() at once lets zlib inflate up to 2 GB in one call, whatever the member declares
        while chunk := handle.read(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def load_index(path: str | Path, trusted: bool = False) -> Any:
    """What an index file holds, read as `np.load(path, allow_pickle=True)` reads it, without running pickled
    code unless `trusted`: an `np.savez` archive as a dict of arrays (name -> array), an `np.save` file as its
    array, anything else as a pickle (LoFTR's scene-info dicts). UntrustedPickleError (a ValueError) naming
    the file and the global when a pickle holds more than plain data; ValueError naming it when an array or
    archive member declares more than the file holds; a corrupt file raises what pickle, zipfile or numpy
    raise, for the caller to name the file.

    The file is read whole first and parsed from memory: what a pickle or a header declares is then never
    allocated beyond the file's own size (a file object's read(n) allocates the n a pickle names)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # /dev/zero or a pipe: read() would never end
        raise ValueError(f"{path} is not a regular file (a device, pipe or folder): give an index file")
    with open(path, "rb") as file:
        data = file.read()
    stream = io.BytesIO(data)
    if zipfile.is_zipfile(stream):
        arrays = {}
        with zipfile.ZipFile(stream) as archive:
            for member in archive.infolist():
                content = io.BytesIO(_member_bytes(archive, member, path))
                arrays[member.filename.removesuffix(".npy")] = _read_npy(content, path, member.filename, trusted)
        return arrays
    stream.seek(0)  # is_zipfile read the end
    if data.startswith(NPY_MAGIC):
        return _read_npy(stream, path, "", trusted)
    return _unpickle(stream, path, trusted)


def read_small_numbers(path: str | Path, max_bytes: int) -> np.ndarray:
    """The whitespace-separated numbers of the text file at `path` (`#` comments), float64 and at least 2-D,
    read as `read_small_text` reads (at most `max_bytes`); FileNotFoundError, or ValueError whose message
    starts with the path, otherwise."""
    text = read_small_text(path, max_bytes)
    try:
        return np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"{path}: cannot read numbers ({error})") from None


def read_small_text(path: str | Path, max_bytes: int) -> str:
    """The text of the regular file at `path`, at most `max_bytes` long (undecodable bytes replaced), read no
    further than that. FileNotFoundError, or ValueError whose message starts with the path, when it is missing,
    not a regular file (a device such as /dev/zero, a pipe, a folder) or longer."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file (a device, pipe or folder): give a text file")
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)  # one byte past the bound: the file may have grown since it was listed
    except OSError as error:  # no permission, an I/O error
        raise ValueError(f"{path} cannot be read: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise ValueError(f"{path} is larger than {max_bytes} bytes, more than this file can need: is it the "
                         f"right file?")
    return data.decode(errors="replace")

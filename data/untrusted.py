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
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core.multiarray import _reconstruct, scalar  # what numpy's pickles of arrays and scalars call
from numpy._core.numeric import _frombuffer  # arrays pickled with protocol 5

NPY_MAGIC = b"\x93NUMPY"

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


def _unpickle(stream, path: Path, trusted: bool) -> Any:
    return (pickle.Unpickler(stream) if trusted else _DataUnpickler(stream, path)).load()


def _read_npy(stream, path: Path, trusted: bool) -> np.ndarray:
    """The array of a seekable `.npy` stream; an object array's pickle goes through the same unpickler."""
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(stream)
    if dtype.hasobject:  # numpy writes the whole array as one pickle right after the header
        array = _unpickle(stream, path, trusted)
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{path}: an object array member holds a {type(array).__name__}, not an array")
        return array
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def load_index(path: str | Path, trusted: bool = False) -> Any:
    """What an index file holds, read as `np.load(path, allow_pickle=True)` reads it, without running pickled
    code unless `trusted`: an `np.savez` archive as a dict of arrays (name -> array), an `np.save` file as its
    array, anything else as a pickle (LoFTR's scene-info dicts). UntrustedPickleError (a ValueError) naming
    the file and the global when a pickle holds more than plain data; a corrupt file raises what pickle,
    zipfile or numpy raise, for the caller to name the file."""
    path = Path(path)
    with open(path, "rb") as file:
        if zipfile.is_zipfile(file):
            arrays = {}
            with zipfile.ZipFile(file) as archive:
                for name in archive.namelist():
                    with archive.open(name) as member:
                        arrays[name.removesuffix(".npy")] = _read_npy(member, path, trusted)
            return arrays
        file.seek(0)
        if file.read(len(NPY_MAGIC)) == NPY_MAGIC:
            file.seek(0)
            return _read_npy(file, path, trusted)
        file.seek(0)
        return _unpickle(file, path, trusted)


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

"""Keras' two HDF5 weight layouts, read and written with h5py (data only: nothing executes).

Keras 3 (`.weights.h5`, and `model.weights.h5` inside a `.keras` archive):
    layers/<path>/vars/0, 1, …   <path> = the layer's class in snake case, numbered per class
                                 within the model (dense, dense_1, dropout, …); @name = its name
    vars/  @name = the model's name                 (optimizer/vars/…: optional, not written)
Legacy Keras 2 / tf.keras (`model.save_weights('model.h5')`, and `model_weights/` of a full
model `.h5`):
    @layer_names = every layer; <layer>/@weight_names = 'dense/kernel:0', …; the datasets at
    those names inside <layer>/; layers are matched to the model's by order, as Keras does.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from digitnet.budget import MAX_PARAMS, MEMORY_BUDGET, Budget
from digitnet.keras.errors import KerasFileError
from digitnet.keras.layers import snake_case
from digitnet.spec import BATCHNORM_WEIGHTS

# Written into the files' version attributes: the Keras release whose layout we mirror and
# check against (docs/keras.md records that check).
KERAS_VERSION = "3.15.1"
BACKEND = "jax"
MAX_ELEMENTS = 1 << 27  # per array; far above any MLP on 28×28 inputs
ASCII = h5py.string_dtype("ascii")
MAX_DEPTH = 16  # groups within groups; Keras writes 4 levels
MAX_OBJECTS = 10_000  # links walked in one file; Keras writes a few per layer
MAX_ATTR_BYTES = 16 << 20  # one attribute (model_config is the largest, a few kB)
MAX_RATIO = 200  # a dataset's bytes over its stored bytes; as for .keras archive members
MAX_CHUNK_BYTES = 64 << 20  # one stored chunk, decompressed whole even to read a few values
# HDF5 filters a weights file may use: deflate, shuffle, fletcher32 and h5py's LZF. Any other id
# would make HDF5 search its plugin path for code to run.
FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}


@dataclass
class LayerWeights:
    class_name: str  # Keras class: Dense, Dropout, Flatten
    name: str
    arrays: list[Any] = field(default_factory=list)  # kernel, bias: arrays (h5py datasets until read)


# The names of a layer's weights in legacy files (Dense: kernel, bias).
WEIGHT_NAMES = {"Normalization": ("mean", "variance", "count"),
                "BatchNormalization": tuple(name for name, _ in BATCHNORM_WEIGHTS)}


def h5_bytes(write: Any) -> bytes:
    """Run write(h5py.File) on an in-memory file and return its bytes (for atomic writes)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        write(f)
    return buf.getvalue()


def write_keras3(f: h5py.Group, layers: Iterable[LayerWeights], model_name: str) -> None:
    used: dict[str, int] = {}
    root = f.create_group("layers")
    for layer in layers:
        base = snake_case(layer.class_name)
        path = base if base not in used else f"{base}_{used[base] + 1}"
        used[base] = used.get(base, -1) + 1
        group = root.create_group(path).create_group("vars")
        group.attrs["name"] = layer.name
        for i, a in enumerate(layer.arrays):  # float32, and Normalization's int32 count as Keras'
            a = np.asarray(a)
            group.create_dataset(str(i), data=a if a.dtype.kind == "i" else a.astype(np.float32))
    f.create_group("vars").attrs["name"] = model_name


def write_keras3_paths(f: h5py.Group, layers: Iterable[tuple[str, LayerWeights]]) -> None:
    """Keras 3's layout of a model holding models, or of a subclassed model: each layer's
    weights at the path Keras gives it (`layers/sequential/layers/dense/vars`, or the
    attribute's name, `dense_1/vars`)."""
    for path, layer in layers:
        group = f.require_group(path).create_group("vars")
        for i, a in enumerate(layer.arrays):
            group.create_dataset(str(i), data=np.asarray(a, np.float32))
    f.create_group("vars")


def read_keras3_paths(f: h5py.Group, paths: list[str], source: str) -> list[LayerWeights] | None:
    """The weights at Keras 3 paths (as write_keras3_paths), or None if the file has not all
    of them."""
    check_file(f.file, source)
    budget = Budget(4 * MAX_PARAMS, source, KerasFileError)
    groups = [f.get(f"{path}/vars") for path in paths]
    if not all(isinstance(g, h5py.Group) for g in groups):
        return None
    out = []
    for path, vars_ in zip(paths, groups, strict=True):
        arrays = [read_array(vars_[str(i)], f"{source}: {path}/vars/{i}", budget)
                  for i in range(len(vars_)) if str(i) in vars_]
        if len(arrays) != len(vars_):
            raise KerasFileError(f"{source}: {path}/vars holds unexpected entries {sorted(vars_)}")
        out.append(LayerWeights("Dense", path.rsplit("/", 1)[-1], arrays))
    return out


def write_legacy(f: h5py.Group, layers: Iterable[LayerWeights]) -> None:
    layers = list(layers)
    f.attrs.create("backend", BACKEND, dtype=ASCII)
    f.attrs.create("keras_version", KERAS_VERSION, dtype=ASCII)
    f.attrs.create("layer_names", [layer.name for layer in layers], dtype=ASCII)
    for layer in layers:
        group = f.create_group(layer.name)
        kinds = WEIGHT_NAMES.get(layer.class_name, ("kernel", "bias"))
        names = [f"{layer.name}/{w}:0" for w in kinds[: len(layer.arrays)]]
        if names:
            group.attrs.create("weight_names", names, dtype=ASCII)
        else:  # as Keras writes it for a layer without weights: an empty float array
            group.attrs.create("weight_names", np.zeros(0))
        for name, a in zip(names, layer.arrays, strict=True):
            group.create_dataset(name, data=np.asarray(a, np.float32))
    f.create_group("top_level_model_weights").attrs.create("weight_names", np.zeros(0))


def check_file(f: h5py.Group, source: str) -> None:
    """Walk every link of the file before anything is read: no soft or external links, no
    dataset stored outside the file (external storage, virtual datasets), none declared but
    never written (reading it would allocate its fill values), and the datasets' sizes summed
    over every path that reaches them within the memory budget."""
    budget = Budget(MEMORY_BUDGET, f"{source}", KerasFileError)
    seen = [0]

    def walk(group: h5py.Group, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise KerasFileError(f"{source}: groups nested over {MAX_DEPTH} deep")
        for key in group:
            seen[0] += 1
            if seen[0] > MAX_OBJECTS:
                raise KerasFileError(f"{source}: more than {MAX_OBJECTS} objects (or a cycle of links)")
            link = group.get(key, getlink=True)
            where = f"{group.name.rstrip('/')}/{key}"
            if not isinstance(link, h5py.HardLink):
                raise KerasFileError(f"{source}: {where} is a {type(link).__name__}; digitnet reads "
                                     "only data stored in the file itself")
            obj = group.get(key)
            if isinstance(obj, h5py.Group):
                walk(obj, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                if obj.external or obj.is_virtual:
                    raise KerasFileError(f"{source}: {where} is stored outside the file "
                                         f"({'virtual' if obj.is_virtual else 'external storage'})")
                stored = obj.id.get_storage_size()
                if obj.size and stored == 0:
                    raise KerasFileError(f"{source}: {where} was declared but never written")
                nbytes = obj.size * obj.dtype.itemsize
                # Unwritten chunks read as fill values, and zeros deflate 1000:1: either way a
                # small file would make the loader allocate what its bytes never paid for.
                if nbytes > (1 << 20) and nbytes > MAX_RATIO * stored:
                    raise KerasFileError(f"{source}: {where} holds {nbytes:,} bytes in {stored:,} "
                                         f"stored; refusing more than {MAX_RATIO}:1 (weights barely "
                                         "compress)")
                check_storage(obj, f"{source}: {where}")
                budget.charge(obj.size * obj.dtype.itemsize, where)

    walk(f, 0)


def check_storage(ds: h5py.Dataset, where: str) -> None:
    """A dataset's type and layout, before any of it is read: numbers of at most 8 bytes (an
    optimizer's step count is an integer), chunks of bounded size, and only the common
    compression filters."""
    if ds.dtype.kind not in "fiub" or ds.dtype.itemsize > 8:
        raise KerasFileError(f"{where}: values of type {ds.dtype}; Keras files hold numbers")
    if ds.chunks is not None:
        chunk = math.prod(ds.chunks) * ds.dtype.itemsize
        if chunk > MAX_CHUNK_BYTES:
            raise KerasFileError(f"{where}: chunks of {chunk:,} bytes, more than the "
                                 f"{MAX_CHUNK_BYTES:,} allowed")
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in FILTERS:
            raise KerasFileError(f"{where}: HDF5 filter {code} is not one of "
                                 f"{', '.join(FILTERS.values())}; refusing the file")


def read_weights(f: h5py.Group, source: str,
                 check: Callable[[list[LayerWeights]], None] | None = None) -> list[LayerWeights]:
    """The layers that hold weights, in model order, from either layout. `check` sees them
    first with their h5py datasets (shapes known, nothing read) and may refuse the file."""
    check_file(f.file, source)
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        found = find_legacy(f, source)
    elif isinstance(f.get("model_weights"), h5py.Group):
        found = find_legacy(f["model_weights"], source)
    elif isinstance(f.get("layers"), h5py.Group):
        found = find_keras3(f["layers"], source)
    else:
        raise KerasFileError(f"{source}: not a Keras weights file (no layers/ group or layer_names)")
    if check is not None:
        check(found)
    budget = Budget(4 * MAX_PARAMS, source, KerasFileError)  # float32 values actually read
    for layer in found:
        layer.arrays = [read_array(ds, f"{source}: {ds.name.lstrip('/')}", budget,
                                   small=layer.class_name == "Normalization") for ds in layer.arrays]
    return found


def find_keras3(layers: h5py.Group, source: str) -> list[LayerWeights]:
    found: list[tuple[tuple[int, int], LayerWeights]] = []
    for path, group in layers.items():
        vars_ = group.get("vars") if isinstance(group, h5py.Group) else None
        if not isinstance(vars_, h5py.Group):
            raise KerasFileError(f"{source}: layers/{path} has no vars/ group")
        stats = re.fullmatch(r"normalization(?:_(\d+))?", path)
        arrays = [dataset(vars_[str(i)], f"{source}: layers/{path}/vars/{i}", small=stats is not None)
                  for i in range(len(vars_)) if str(i) in vars_]
        if len(arrays) != len(vars_):
            raise KerasFileError(f"{source}: layers/{path}/vars holds unexpected entries {sorted(vars_)}")
        if stats is not None and arrays:  # an adapted Normalization: mean, variance, count
            if len(arrays) != 3:
                raise KerasFileError(f"{source}: layers/{path} holds {len(arrays)} arrays, not 3")
            name = attr_text(vars_.attrs.get("name", path))
            found.append(((0, int(stats.group(1) or 0)), LayerWeights("Normalization", name, arrays)))
            continue
        norm = re.fullmatch(r"batch_normalization(?:_(\d+))?", path)
        if norm is not None and arrays:  # gamma, beta, moving_mean, moving_variance
            if len(arrays) != 4:
                raise KerasFileError(f"{source}: layers/{path} holds {len(arrays)} arrays, not 4")
            name = attr_text(vars_.attrs.get("name", path))
            found.append(((2, int(norm.group(1) or 0)), LayerWeights("BatchNormalization", name, arrays)))
            continue
        match = re.fullmatch(r"dense(?:_(\d+))?", path)
        if match is None:
            if arrays:
                raise KerasFileError(f"{source}: layer {path!r} has weights; only Dense, "
                                     "BatchNormalization and Normalization layers with weights are "
                                     "supported")
            continue
        name = attr_text(vars_.attrs.get("name", path))
        found.append(((1, int(match.group(1) or 0)), LayerWeights("Dense", name, arrays)))
    return [layer for _, layer in sorted(found, key=lambda t: t[0])]


def find_legacy(f: h5py.Group, source: str) -> list[LayerWeights]:
    out = []
    for name in attr_list(f, "layer_names", source):
        group = f.get(name)
        if not isinstance(group, h5py.Group):
            raise KerasFileError(f"{source}: layer_names lists {name!r} but there is no such group")
        weight_names = attr_list(group, "weight_names", source)
        if not weight_names:
            continue
        # A Normalization's statistics: 'normalization/mean' (Keras 3) or '…/mean:0' (Keras 2);
        # a BatchNormalization's weights begin with its gamma
        first = weight_names[0].rsplit("/", 1)[-1].split(":")[0]
        stats = first == "mean"
        # A model inside the model is one entry holding its layers' weights, each named
        # <model>/<layer>/kernel: one LayerWeights per layer, in order.
        by_layer: dict[str, list[Any]] = {}
        for w in weight_names:
            if not isinstance(group.get(w), h5py.Dataset):
                raise KerasFileError(f"{source}: {name}/{w} is missing")
            owner = w.rsplit("/", 1)[0] if w.count("/") > 1 else name
            by_layer.setdefault(owner, []).append(dataset(group[w], f"{source}: {name}/{w}", small=stats))
        kind = "Normalization" if stats else "BatchNormalization" if first == "gamma" else "Dense"
        out += [LayerWeights(kind, owner.rsplit("/", 1)[-1] if owner != name else name, arrays)
                for owner, arrays in by_layer.items()]
    return out


def dataset(ds: Any, where: str, small: bool = False) -> h5py.Dataset:
    """A weight dataset, its type and size checked (not read): a float array of 1 or 2
    dimensions; small: a Normalization statistic (0 or 1 dimensions, its count an integer)."""
    kinds, dims = ("fiu", (0, 1)) if small else ("f", (1, 2))
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in kinds or ds.ndim not in dims:
        raise KerasFileError(f"{where}: expected a {' or '.join(map(str, dims))}-D "
                             f"{'numeric' if small else 'float'} array")
    if ds.size > MAX_ELEMENTS:
        raise KerasFileError(f"{where}: {ds.size} values is more than an MLP layer holds")
    return ds


def read_array(ds: Any, where: str, budget: Budget | None = None, small: bool = False) -> np.ndarray:
    dataset(ds, where, small)
    if budget is not None:  # the file's total, however many times it lists one array
        budget.charge(ds.size * max(ds.dtype.itemsize, 4), where)
    a = np.asarray(ds[()], np.int32 if ds.dtype.kind in "iu" else np.float32)
    if not np.isfinite(a).all():
        raise KerasFileError(f"{where}: contains NaN or infinite values")
    return a


def attr_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def attr_value(group: h5py.Group, name: str, source: str) -> Any:
    """An attribute's value, its stored size checked before it is read."""
    try:
        size = group.attrs.get_id(name).get_storage_size()
    except RuntimeError:  # HDF5 reports an empty attribute's size 0 as a failure
        size = 0
    if size > MAX_ATTR_BYTES:
        raise KerasFileError(f"{source}: {group.name}/@{name} holds {size:,} bytes, more than "
                             f"the {MAX_ATTR_BYTES:,} allowed")
    return group.attrs[name]


def attr_list(group: h5py.Group, name: str, source: str) -> list[str]:
    """A list-of-names attribute; Keras splits big ones into name0, name1, …"""
    if name in group.attrs:
        values = list(np.atleast_1d(attr_value(group, name, source)))
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs and i < MAX_OBJECTS:
            values += list(np.atleast_1d(attr_value(group, f"{name}{i}", source)))
            i += 1
        if i == 0:
            raise KerasFileError(f"{source}: {group.name} has no {name} attribute")
    if any(isinstance(v, float | np.floating) for v in values):
        raise KerasFileError(f"{source}: {group.name}/@{name} is not a list of names")
    return [attr_text(v) for v in values]

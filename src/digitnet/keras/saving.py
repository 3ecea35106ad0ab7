"""Whole-model files: the Keras 3 `.keras` archive and the legacy full-model `.h5`.

Both hold a JSON description of the model and its weights (see h5weights). Reading them parses
JSON and reads arrays, nothing else: a class, module or option outside the small set an MLP
needs is refused by name, before any weight is read. Archive members are checked (names, sizes,
compression ratio) before a byte of them is decompressed.
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py

from digitnet.budget import check_layer_sizes
from digitnet.keras import losses
from digitnet.keras.errors import KerasFileError, KerasValueError
from digitnet.keras.h5weights import ASCII, BACKEND, KERAS_VERSION, LayerWeights, attr_value, write_legacy
from digitnet.keras.layers import DTYPE_POLICY, INERT_OPTIONS, LAYER_CLASSES, Dense, InputLayer, Layer

ARCHIVE_MEMBERS = {"metadata.json": 1 << 20, "config.json": 16 << 20, "model.weights.h5": 1 << 30}
MAX_MEMBERS = 64
# The central directory's bytes, checked before zipfile parses it: it builds an object per entry,
# so a 47 MB archive of a million entries cost 15 s of CPU before MAX_MEMBERS was checked.
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 4096
MAX_LAYERS = 1000
MAX_RATIO = 200  # uncompressed / compressed; weights barely compress, zip bombs do
MAX_JSON = 16 << 20  # characters of a model's JSON description (as the archive's config.json)
# Metrics a saved compile config may list: each is built when the model loads (an AUC holds
# four arrays of its thresholds), so a 16 MiB list of them must not be.
MAX_METRICS = 64
KERAS_MODULES = ("keras", "keras.layers", "keras.models", "keras.initializers", "keras.optimizers",
                 "keras.losses", "keras.metrics")


# ---------------------------------------------------------------- writing

def layer_entry(layer: Layer, input_dim: int | None, keras3: bool) -> dict[str, Any]:
    if not keras3:
        return {"class_name": layer.class_name, "config": layer.get_config()}
    entry = {"module": "keras.layers", "class_name": layer.class_name, "config": layer.get_config(),
             "registered_name": None}
    if isinstance(layer, Dense) and input_dim is not None:
        entry["build_config"] = {"input_shape": [None, input_dim]}
    return entry


def model_config(model: Any, keras3: bool, top: bool = True) -> dict[str, Any]:
    """The Keras description of a built model, as Keras 3 writes a Sequential. A functional
    chain and a subclassed model are written as the Sequential of the chain they compute (Keras
    loads that); a Sequential or functional model inside is kept as Keras keeps it (a nested
    Sequential entry) in .keras files, and expanded into the chain in legacy .h5 files."""
    shape = list(model.input_shape[1:])
    first = model.input_layer or InputLayer(shape=tuple(shape), name="input_layer")
    entries = [layer_entry(first, None, keras3)]
    nested = keras3 and model.keeps_nesting()
    for layer in model._layers if nested else model._atoms():
        if hasattr(layer, "_atoms"):
            entries.append(model_config(layer, keras3, top=False))
            continue
        weights = layer.get_weights() if isinstance(layer, Dense) else []
        entries.append(layer_entry(layer, weights[0].shape[0] if weights else None, keras3))
    config = {"name": model.name, "trainable": True, "dtype": DTYPE_POLICY, "layers": entries,
              "build_input_shape": [None, *shape]}
    if not keras3:
        return {"class_name": "Sequential", "config": config}
    out = {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None,
           "build_config": {"input_shape": [None, *shape]}}
    if top and model.optimizer is not None and model.loss is not None:
        out["compile_config"] = {
            "optimizer": {"module": "keras.optimizers", "class_name": model.optimizer.class_name,
                          "config": model.optimizer.get_config(), "registered_name": None},
            **training_options(model)}
    return out


def training_options(model: Any) -> dict[str, Any]:
    from_logits = bool(model.loss_object is not None and model.loss_object.from_logits)
    return {"loss": losses.config(model.loss, model.label_smoothing, from_logits), "loss_weights": None,
            "metrics": list(model.metric_names), "weighted_metrics": None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": True}


def archive_bytes(model: Any, weights: bytes) -> bytes:
    meta = {"keras_version": KERAS_VERSION, "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # stored, as Keras writes it
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(model_config(model, keras3=True)))
        z.writestr("model.weights.h5", weights)
    return buf.getvalue()


def write_legacy_model(f: h5py.File, model: Any, layers: list[LayerWeights]) -> None:
    f.attrs["backend"] = BACKEND
    f.attrs["keras_version"] = KERAS_VERSION
    f.attrs.create("model_config", json.dumps(model_config(model, keras3=False)), dtype=ASCII)
    if model.optimizer is not None and model.loss is not None:
        training = {**training_options(model),
                    "optimizer_config": {"class_name": model.optimizer.class_name,
                                         "config": model.optimizer.get_config()}}
        f.attrs.create("training_config", json.dumps(training), dtype=ASCII)
    write_legacy(f.create_group("model_weights"), layers)


# ---------------------------------------------------------------- reading

def check_directory(path: Path) -> None:
    """Refuse an archive whose central directory (read by zipfile.ZipFile whole, one object per
    entry) declares more members or bytes than a Keras model can have."""
    # zipfile's own reader of the end record (private, in CPython 3.11-3.14): what ZipFile reads
    # first. Without it, ZipFile's member limit below still applies, after its parse.
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        return
    with open(path, "rb") as f:
        end = end_record(f)
    if end is None:
        return  # ZipFile says why
    members, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if members > MAX_MEMBERS or size > MAX_DIRECTORY_BYTES:
        raise KerasFileError(f"{path}: a zip directory of {members:,} members in {size:,} bytes; "
                             "a Keras model has a handful")


def read_archive(path: Path) -> tuple[dict[str, Any], bytes]:
    """(config, model.weights.h5 bytes) of a .keras file, after checking every member."""
    try:
        check_directory(path)
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise KerasFileError(f"{path}: not a .keras archive ({exc})") from None
    with z:
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            raise KerasFileError(f"{path}: {len(infos)} members; a Keras model has a handful")
        for info in infos:
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                raise KerasFileError(f"{path}: member {name!r} has an unsafe path; refusing the file")
            if info.flag_bits & 0x1:
                raise KerasFileError(f"{path}: member {name!r} is encrypted; refusing the file")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise KerasFileError(f"{path}: member {name!r} uses compression method "
                                     f"{info.compress_type}; Keras writes stored or deflated members")
            limit = ARCHIVE_MEMBERS.get(name, 1 << 30)
            if info.file_size > limit:
                raise KerasFileError(f"{path}: member {name!r} claims {info.file_size} bytes "
                                     f"(limit {limit}); refusing the file")
            if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise KerasFileError(f"{path}: member {name!r} compresses {ratio}:1; refusing a "
                                     "likely zip bomb")
        members = {i.filename: i for i in infos}
        for needed in ("config.json", "model.weights.h5"):
            if needed not in members:
                raise KerasFileError(f"{path}: not a Keras 3 model archive (no {needed})")

        def read(name: str) -> bytes:
            info = members[name]
            with z.open(info) as f:
                data = f.read(info.file_size + 1)
            if len(data) != info.file_size:
                raise KerasFileError(f"{path}: member {name!r} is not the size it claims")
            return data

        try:
            config = json.loads(read("config.json"))
            weights = read("model.weights.h5")
        except (zipfile.BadZipFile, ValueError, OSError, RuntimeError, NotImplementedError) as exc:
            raise KerasFileError(f"{path}: corrupt archive ({exc})") from None
        except RecursionError:
            raise KerasFileError(f"{path}: config.json is nested too deeply") from None
    if not isinstance(config, dict):
        raise KerasFileError(f"{path}: config.json is not a JSON object")
    return config, weights


def check_origin(entry: dict[str, Any], source: Path) -> None:
    """Refuse anything that names code outside Keras' built-ins."""
    module, registered = entry.get("module"), entry.get("registered_name")
    if module is not None and module not in KERAS_MODULES and not str(module).startswith("keras.src."):
        raise KerasFileError(f"{source}: {entry.get('class_name')!r} comes from module {module!r}, "
                             "not Keras; refusing the file")
    if registered not in (None, entry.get("class_name")):
        raise KerasFileError(f"{source}: custom object {registered!r} is not supported (digitnet "
                             "never runs code from a model file)")


MAX_NESTING = 8  # models inside models inside …


def layers_from_config(config: Any, source: Path, make_model: Any, depth: int = 0) -> tuple[str, list[Layer]]:
    """The model's name and layers from its Keras JSON description (a model inside it is one
    layer, made by make_model(name, layers, functional): a Sequential or functional chain)."""
    if not isinstance(config, dict):
        raise KerasFileError(f"{source}: the model config is not a JSON object")
    check_origin(config, source)
    kind = config.get("class_name")
    if kind == "Functional":
        return functional_layers(config, source, make_model, depth)
    if kind != "Sequential":
        raise KerasFileError(f"{source}: a {kind!r} model; digitnet reads Sequential models of "
                             f"{', '.join(LAYER_CLASSES)} layers")
    body = config.get("config")
    entries = body if isinstance(body, list) else (body or {}).get("layers")  # Keras ≤ 2.2: a list
    if not isinstance(entries, list):
        raise KerasFileError(f"{source}: the Sequential config has no list of layers")
    name = body.get("name", "sequential") if isinstance(body, dict) else "sequential"
    if len(entries) > MAX_LAYERS:
        raise KerasFileError(f"{source}: {len(entries)} layers; digitnet reads at most {MAX_LAYERS}")
    layers = [layer_from_entry(e, source, make_model, depth) for e in entries]
    check_sizes(layers, source)
    return str(name), layers


def functional_layers(config: dict[str, Any], source: Path, make_model: Any,
                      depth: int = 0) -> tuple[str, list[Layer]]:
    """A Functional model's layers, if they form a chain: one input, each layer called once on
    the previous one's output, the last one the output. The InputLayer comes first."""
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries or len(entries) > MAX_LAYERS:
        raise KerasFileError(f"{source}: the Functional config has no list of layers (or too many)")
    names = [(e.get("config") or {}).get("name", e.get("name")) if isinstance(e, dict) else None
             for e in entries]
    for i, entry in enumerate(entries[1:], 1):
        nodes = entry.get("inbound_nodes") if isinstance(entry, dict) else None
        args = nodes[0].get("args") if isinstance(nodes, list) and len(nodes) == 1 and isinstance(
            nodes[0], dict) else None
        history = (args[0].get("config") or {}).get("keras_history") if isinstance(args, list) and len(
            args) == 1 and isinstance(args[0], dict) else None
        if (not isinstance(history, list) or not history or history[0] != names[i - 1]
                or nodes[0].get("kwargs")):
            raise KerasFileError(f"{source}: layer {names[i]!r} is not called once on the layer before "
                                 "it; digitnet reads Functional models that are chains of layers")
    # One input and one output: ["name", 0, 0], or, as Keras 2 wrote them, [["name", 0, 0]].
    ends = [e[0] if isinstance(e, list) and len(e) == 1 and isinstance(e[0], list) else e
            for e in (body.get("input_layers"), body.get("output_layers"))]
    if [e[0] if isinstance(e, list) and e else None for e in ends] != [names[0], names[-1]]:
        raise KerasFileError(f"{source}: a Functional model whose input and output are not the ends "
                             "of its chain of layers")
    if not isinstance(entries[0], dict) or entries[0].get("class_name") != "InputLayer":
        raise KerasFileError(f"{source}: a Functional model must start with its InputLayer")
    layers = [layer_from_entry(e, source, make_model, depth) for e in entries]
    check_sizes(layers, source)
    return str(body.get("name", "functional")), layers


def check_sizes(layers: list[Layer], source: Path) -> None:
    """The parameters the layers declare (when the input size is known), within the budget,
    before any array is allocated: Dense(units=10**7) is refused here, not by the allocator."""
    sizes: list[int] = []
    shape = next((layer.input_shape for layer in layers if layer.input_shape is not None), None)
    if shape is not None:
        dims = [d for d in shape if d is not None]
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise KerasFileError(f"{source}: input shape {tuple(shape)} is not positive whole numbers")
        sizes.append(math.prod(dims))
    else:
        sizes.append(1)
    sizes += [layer.units for layer in plain(layers) if isinstance(layer, Dense)]
    check_layer_sizes(sizes, str(source), KerasFileError)


def check_declared_weights(layers: list[Layer], found: list[LayerWeights], source: Path) -> None:
    """The kernel and bias shapes the config's Dense layers declare, against the weight file's
    datasets (their shapes only: nothing read yet). Called before any model is built, so a
    config that declares Dense(100000) over small weights costs nothing."""
    layers = plain(layers)  # models inside the model expanded: their Dense layers in order
    dense = [layer for layer in layers if isinstance(layer, Dense)]
    # A Normalization's statistics and a BatchNormalization's weights (1-D, bounded by
    # h5weights.dataset) are matched when assigned.
    found = [item for item in found if item.class_name == "Dense"]
    if len(found) != len(dense):
        raise KerasFileError(f"{source}: the file holds weights for {len(found)} layers, its config "
                             f"declares {len(dense)} Dense layers")
    current: tuple[Any, ...] | None = None
    items = iter(found)
    for layer in layers:
        if current is None and layer.input_shape is not None:
            current = (None, *layer.input_shape)
        if isinstance(layer, Dense):
            item = next(items)
            got = [tuple(a.shape) for a in item.arrays]
            fan_in = current[-1] if current is not None else got[0][0] if got and len(got[0]) == 2 else -1
            want = [(fan_in, layer.units), (layer.units,)][:layer.weight_count]
            if got != want:
                raise KerasFileError(f"{source}: layer {item.name!r} holds weights of shapes {got}; "
                                     f"the config's {layer.name!r} declares {want}")
            current = current or (None, fan_in)
        if current is not None:
            try:
                current = layer.output_shape_for(current)
            except KerasValueError as exc:
                raise KerasFileError(f"{source}: {exc}") from None


def plain(layers: list[Layer]) -> list[Layer]:
    """The layers, those of models inside expanded (a model holds its own in `_layers`)."""
    out: list[Layer] = []
    for layer in layers:
        out += plain(layer._layers) if hasattr(layer, "_layers") else [layer]
    return out


def layer_from_entry(entry: Any, source: Path, make_model: Any = None, depth: int = 0) -> Layer:
    if not isinstance(entry, dict):
        raise KerasFileError(f"{source}: a layer entry is not a JSON object")
    check_origin(entry, source)
    kind = entry.get("class_name")
    if kind in ("Sequential", "Functional") and make_model is not None:  # a model inside the model
        if depth >= MAX_NESTING:
            raise KerasFileError(f"{source}: models nested more than {MAX_NESTING} deep")
        name, layers = layers_from_config(entry, source, make_model, depth + 1)
        return make_model(name, layers, functional=kind == "Functional")
    if kind not in LAYER_CLASSES:
        raise KerasFileError(f"{source}: layer type {kind!r} is not supported; digitnet reads "
                             f"{', '.join(LAYER_CLASSES)}")
    options = entry.get("config") or {}
    if not isinstance(options, dict):
        raise KerasFileError(f"{source}: the {kind} layer's config is not a JSON object")
    options = dict(options)
    for key in INERT_OPTIONS:
        if options.get(key) is None:
            options.pop(key, None)
    try:
        return LAYER_CLASSES[kind](**options)
    except KerasValueError as exc:
        raise KerasFileError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise KerasFileError(f"{source}: bad {kind} config ({exc})") from None


def compile_options(config: dict[str, Any], source: Any = "") -> dict[str, Any] | None:
    """compile() arguments from a .keras compile_config or a legacy training_config."""
    if not isinstance(config, dict) or config.get("loss") is None:
        return None
    optimizer = config.get("optimizer", config.get("optimizer_config"))
    metrics: list[Any] = []
    for m in config.get("metrics") or []:
        metrics += m if isinstance(m, list) else [m]  # Keras 2 nests them per output
        if len(metrics) > MAX_METRICS:
            raise KerasFileError(f"{source}: its compile config lists over {MAX_METRICS} metrics")
    return {"optimizer": optimizer, "loss": config["loss"], "metrics": metrics}


def read_json_attr(f: h5py.File, name: str, source: Path) -> Any:
    if name not in f.attrs:
        return None
    value = attr_value(f, name, str(source))
    try:
        return json.loads(value.decode() if isinstance(value, bytes) else str(value))
    except ValueError as exc:
        raise KerasFileError(f"{source}: @{name} is not valid JSON ({exc})") from None
    except RecursionError:
        raise KerasFileError(f"{source}: @{name} is nested too deeply") from None


# ---------------------------------------------------------------- keras.saving

_registered: dict[str, type] = {}


def register_keras_serializable(package: str = "Custom", name: str | None = None) -> Any:
    """keras.saving.register_keras_serializable: records the class under `package>name` and
    returns it unchanged (digitnet writes a subclassed model as the chain of layers it
    computes, so loading never needs the class)."""
    def register(cls: type) -> type:
        _registered[f"{package}>{name or cls.__name__}"] = cls
        return cls
    return register


def get_registered_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return next((key for key, value in _registered.items() if value is cls), cls.__name__)

# keras.saving.load_model and save_model are digitnet.keras.models' (set by digitnet.keras).

"""The Python API: fit a model, save it as a run directory, load it back, predict, evaluate."""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from digitnet import artifacts as art
from digitnet.callbacks import Callback
from digitnet.data.datasets import Dataset, load_dataset
from digitnet.engine import EngineSettings
from digitnet.errors import ConfigError, ModelFileError
from digitnet.metrics import Evaluation, evaluate_arrays
from digitnet.model import MLPSpec, Params, predict_logits, preprocess_stats
from digitnet.runtime import enable_compile_cache
from digitnet.train import EarlyStopping, TrainConfig, fit_arrays


class Model:
    """A trained MLP with its preprocessing: give it raw pixels, get classes back."""

    def __init__(self, spec: MLPSpec, params: Params, stats: dict[str, np.ndarray],
                 config: dict[str, Any] | None = None,
                 history: list[dict[str, float]] | None = None):
        self.spec, self.params, self.stats = spec, params, stats
        self.config = config or {}
        self.history = history or []

    def __repr__(self) -> str:
        return (f"Model({'-'.join(map(str, self.spec.sizes))}, {self.spec.activation}, "
                f"{self.spec.num_params:,} params)")

    def _inputs(self, x: Any) -> np.ndarray:
        x = as_pixels(x)
        if x.ndim == 0 or x.size == 0:
            raise ConfigError(f"expected a batch of images, got an array of shape {x.shape}")
        if x.size == self.spec.input_dim:  # one image
            x = x.reshape(1, -1)
        if x[0].size != self.spec.input_dim:
            raise ConfigError(
                f"each input must have {self.spec.input_dim} values "
                f"(shape {self.spec.input_shape}), got shape {x.shape[1:]}"
            )
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ConfigError("inputs contain NaN or infinite values")
        warn_if_scaled(x)
        return x.reshape(len(x), -1)

    def logits(self, x: Any) -> np.ndarray:
        return predict_logits(self.spec, self.params, self.stats, self._inputs(x))

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities (N, classes) for raw images (N, H, W) or (N, H*W), or one image."""
        z = self.logits(x)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        """Predicted class labels (N,)."""
        return self.logits(x).argmax(axis=1)

    def evaluate(self, x: Any = None, y: Any = None) -> Evaluation:
        """Loss, accuracy, confusion matrix and per-class scores; by default on the test split
        of the dataset the model was trained on. `x` may also be another dataset's name
        ("fashion-mnist"), a folder of IDX files or a Dataset: its test split is used."""
        if x is None:
            ds = dataset_from_config(self.config)
            x, y = ds.x_test, ds.y_test
        elif y is None:
            ds = as_dataset(x)
            if ds.image_shape != self.spec.input_shape:
                raise ConfigError(f"{ds.name}: images of shape {ds.image_shape}, but the model "
                                  f"takes {self.spec.input_shape}")
            x, y = ds.x_test, ds.y_test
        x, y = self._inputs(x), np.asarray(y)
        one_hot = y.ndim == 2 and y.shape[1] == self.spec.num_classes
        if not (y.ndim == 1 and y.dtype.kind in "iu" or one_hot) or len(y) != len(x):
            raise ConfigError(f"labels must be integers (or one-hot rows), one per image; got "
                              f"shape {y.shape} ({y.dtype}) for {len(x)} images")
        return evaluate_arrays(self.spec, self.params, self.stats, x, y)

    def summary(self) -> str:
        return self.spec.summary()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the run directory (config.json, weights.safetensors, history.csv)."""
        path = Path(path)
        config = {"format": art.FORMAT, "format_version": art.FORMAT_VERSION, **self.config,
                  "model": self.spec.to_dict()}
        # One staged write: a full disk leaves the previous model whole, not half replaced.
        art.atomic_write_files(path, {
            art.WEIGHTS: art.tensors_bytes(self.tensors(), {"format": art.FORMAT}),
            art.HISTORY: art.history_bytes(self.history),
            art.CONFIG: art.json_bytes(config),
        })
        return path

    def tensors(self) -> dict[str, np.ndarray]:
        return {**art.params_to_tensors(self.params),
                **{f"preprocess.{k}": np.asarray(v) for k, v in self.stats.items()}}


def as_pixels(x: Any) -> np.ndarray:
    """What a user passes to predict: an array, an image file's path, or a list of paths."""
    if isinstance(x, Dataset):
        raise ConfigError(f"got the dataset {x.name!r}: pass its images (ds.x_test), or use "
                          f"model.evaluate({x.name!r}) for its test split")
    if isinstance(x, str | os.PathLike):
        x = [x]
    if isinstance(x, list | tuple) and x and all(isinstance(v, str | os.PathLike) for v in x):
        from digitnet.data.inputs import read_inputs

        for v in x:
            if not Path(v).is_file():
                from digitnet.data.datasets import NAMES

                hint = (f"; {str(v)!r} is a dataset: use model.evaluate({str(v)!r}) or "
                        f"load_dataset({str(v)!r}).x_test" if str(v) in NAMES else "")
                raise ConfigError(f"{v}: no such image file{hint}")
        return read_inputs([str(v) for v in x])[1]
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged lists
        raise ConfigError(f"expected a batch of images (an array of pixels), got {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"expected pixel values (numbers) or image file paths, got {arr.dtype} "
                          f"values of shape {arr.shape}")
    return arr


def warn_if_scaled(x: np.ndarray) -> None:
    """Models take raw 0–255 pixels and scale them themselves; x/255 given again is scaled twice,
    and the answers are quietly wrong, so say so."""
    if x.dtype.kind == "f" and x.size:
        hi = float(x.max())
        if 0 < hi <= 1:
            warnings.warn(f"the pixel values look already scaled (largest {hi:g} ≤ 1): digitnet "
                          "models take raw 0–255 pixels and scale them themselves "
                          "(pass x, not x / 255)", UserWarning, stacklevel=caller_level())


def caller_level() -> int:
    """The stacklevel of the first frame outside digitnet: where the user's call is."""
    here = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def as_dataset(x: Any) -> Dataset:
    """A Dataset, a dataset name, or a folder of the four IDX files."""
    if isinstance(x, Dataset):
        return x
    if isinstance(x, str | os.PathLike):
        from digitnet.data.datasets import NAMES

        if isinstance(x, str) and x in NAMES:
            return load_dataset(x)
        if Path(x).is_dir():
            return load_dataset(path=x)
        raise ConfigError(f"{x}: not a dataset name ({', '.join(NAMES)}) nor a folder of IDX "
                          "files; to score arrays, pass evaluate(x, y)")
    raise ConfigError("evaluate(x) needs labels: evaluate(x, y), or a dataset name such as "
                      "evaluate('mnist')")


def load(path: str | os.PathLike) -> Model:
    """Load a run directory written by `digitnet train` or `Model.save`."""
    path = art.check_run_dir(Path(path))
    enable_compile_cache()
    config = art.read_json(path / art.CONFIG)
    if config.get("format") != art.FORMAT:
        raise ModelFileError(f"{path / art.CONFIG}: not a digitnet run config")
    spec = art.spec_from_config(config, path)
    tensors, _ = art.read_tensors(path / art.WEIGHTS)
    params = art.tensors_to_params(tensors, spec.sizes, path / art.WEIGHTS)
    stats = art.read_stats(tensors, spec, path / art.WEIGHTS)
    return Model(spec, params, stats, config, art.read_history(path / art.HISTORY))


def dataset_from_config(config: dict[str, Any]) -> Dataset:
    ds = config.get("dataset") or {}
    return load_dataset(ds.get("name", "mnist"), ds.get("path"))


def versions() -> dict[str, str]:
    import optax

    from digitnet import __version__

    return {"digitnet": __version__, "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def device() -> dict[str, str]:
    """What trained a run: JAX's backend and device."""
    return {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind}


def split_validation(ds: Dataset, cfg: TrainConfig):
    """(x_train, y_train, validation or None) as the config asks."""
    if cfg.validation == "none":
        return ds.x_train, ds.y_train, None
    if cfg.validation == "test":
        return ds.x_train, ds.y_train, (ds.x_test, ds.y_test)
    n_val = max(1, round(len(ds.y_train) * float(cfg.validation)))
    order = np.random.default_rng(cfg.seed).permutation(len(ds.y_train))
    tr, va = np.sort(order[:-n_val]), np.sort(order[-n_val:])
    return ds.x_train[tr], ds.y_train[tr], (ds.x_train[va], ds.y_train[va])


def fit(
    spec: MLPSpec | None = None,
    config: TrainConfig | None = None,
    dataset: str | Dataset = "mnist",
    *,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    callbacks: list[Callback] | None = None,
    recipe: str | None = None,
    settings: EngineSettings | None = None,
    **options: Any,
) -> Model:
    """Train an MLP (by default the tutorial's 784-64-64-10 on MNIST) and return it.

    With `out`, the run directory is written there: a checkpoint every epoch, then the final
    model. `resume=True` continues from that directory's last checkpoint. `recipe` (a name from
    digitnet.recipes.recipe_names(), e.g. "best") supplies the spec and config not given.
    `settings` says how the engine runs (digitnet.engine.EngineSettings; this machine's
    defaults when None): speed, not results.
    Keywords set single options over those: `fit(hidden=(128,), dropout=0.5, epochs=3)`.
    """
    if recipe is not None or options:
        from digitnet.config import resolve

        given = {**(spec.to_dict() if spec else {}), **(config.to_dict() if config else {})}
        spec, config, _ = resolve({**given, **options}, recipe=recipe)
    spec = spec or MLPSpec()
    cfg = config or TrainConfig()
    enable_compile_cache()
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    if ds.image_shape != spec.input_shape or ds.num_classes > spec.num_classes:
        spec = MLPSpec(**{**spec.to_dict(), "input_shape": ds.image_shape,
                          "num_classes": max(ds.num_classes, 2)})
    x, y, val = split_validation(ds, cfg)
    stats = preprocess_stats(spec, x)
    cbs: list[Callback] = list(callbacks or [])
    if cfg.patience:
        cbs.append(EarlyStopping(cfg.patience))
    if verbose:
        from digitnet.progress import ProgressBar

        cbs.append(ProgressBar(label_smoothing=cfg.label_smoothing))
    config_doc: dict[str, Any] = {"train": cfg.to_dict(), "dataset": ds.describe()}
    if recipe is not None:
        config_doc["recipe"] = recipe
    if data_dir is not None:
        config_doc["dataset"]["path"] = str(Path(data_dir).resolve())
    state = None
    run_dir = Path(out) if out is not None else None
    if run_dir is not None:
        if run_dir.is_dir():
            art.remove_stale_temps(run_dir)  # left by a killed writer
        if resume and (run_dir / art.CHECKPOINT).exists():
            state = art.load_checkpoint(run_dir, spec, cfg, len(x))
        elif (run_dir / art.WEIGHTS).exists():
            # Starting afresh would pair a new config.json with the old weights until the end:
            # a kill or a full disk meanwhile would leave neither model loadable.
            raise ConfigError(f"{run_dir} already holds a trained model"
                              f"{'' if resume else ' (continue it with --resume)'}; "
                              "choose another output folder or delete it")
        art.write_json(run_dir / art.CONFIG, {"format": art.FORMAT, "format_version": art.FORMAT_VERSION,
                                              "status": "training", **config_doc,
                                              "model": spec.to_dict(), "versions": versions()})
        cbs.insert(0, art.Checkpoint(run_dir, stats))
    t0 = time.perf_counter()
    state = fit_arrays(spec, cfg, x, y, stats, val, state=state, callbacks=cbs, settings=settings)
    train_seconds = time.perf_counter() - t0
    params = jax.tree.map(np.asarray, state.weights())
    test = evaluate_arrays(spec, params, stats, ds.x_test, ds.y_test)
    config_doc.update(
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        versions=versions(),
        device=device(),
        metrics={"test_loss": test.loss, "test_accuracy": test.accuracy,
                 "epochs": state.epoch, "train_seconds": round(train_seconds, 3),
                 **{k: v for k, v in (state.history[-1] if state.history else {}).items()
                    if k not in ("epoch", "seconds")}},
    )
    if cfg.label_smoothing:  # two losses of one set would otherwise look contradictory
        config_doc["metrics"]["loss_notes"] = {
            "loss": f"training objective: cross-entropy with label smoothing {cfg.label_smoothing:g}",
            "val_loss": f"cross-entropy with label smoothing {cfg.label_smoothing:g}",
            "test_loss": "plain cross-entropy"}
    model = Model(spec, params, stats, config_doc, state.history)
    if run_dir is not None:
        model.save(run_dir)
    return model

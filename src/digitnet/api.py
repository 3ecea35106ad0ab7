"""The Python API: fit a model, save it as a run directory, load it back, predict, evaluate."""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from digitnet import artifacts as art
from digitnet import ensemble
from digitnet.callbacks import Callback, TrainState
from digitnet.data.datasets import Dataset, load_dataset
from digitnet.engine import EngineSettings
from digitnet.ensemble import Ensemble
from digitnet.errors import ConfigError, DigitnetError, ModelFileError
from digitnet.metrics import Evaluation, binary_labels, evaluate_arrays
from digitnet.model import MLPSpec, Params, finite_logits, predict_logits, preprocess_stats
from digitnet.runtime import enable_compile_cache
from digitnet.seeds import SUMMARY, SeedRuns, summarize
from digitnet.train import EarlyStopping, TrainConfig, fit_arrays
from digitnet.trainconfig import with_class_weights


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

    @property
    def architecture(self) -> str:
        return "-".join(map(str, self.spec.sizes))

    @property
    def num_params(self) -> int:
        return self.spec.num_params

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
        if self.spec.preprocess != "none":  # a model of inputs "as given" (Keras') takes any scale
            warn_if_scaled(x)
        return x.reshape(len(x), -1)

    @classmethod
    def from_keras(cls, model: Any, preprocess: str = "none", dataset: Any = None) -> Model:
        """A digitnet Model of a built digitnet.keras MLP, its weights copied: it then saves as a
        run directory that every digitnet command reads. `preprocess` is what the Keras code
        did to the pixels before the model saw them: "unit" for x / 255, "center" for
        x / 255 - 0.5, "none" for nothing; the Model then takes raw 0-255 pixels. `dataset`
        (a name or a folder of IDX files) is what `evaluate` and the CLI use by default."""
        from digitnet.spec import PREPROCESS

        if preprocess not in ("none", "unit", "center"):
            raise ConfigError(f"preprocess must be none, unit or center (the Keras code's scaling), "
                              f"got {preprocess!r}; {', '.join(PREPROCESS)} are digitnet's")
        spec = getattr(model, "spec", None)
        if not isinstance(spec, MLPSpec):
            raise ConfigError("from_keras needs a built digitnet.keras model (call build, fit or "
                              "predict first)")
        spec = MLPSpec(**{**spec.to_dict(), "preprocess": preprocess})
        params = [{k: np.array(v, np.float32) for k, v in layer.items()} for layer in model.params()]
        config: dict[str, Any] = {"source": {"keras_model": str(getattr(model, "name", "model"))}}
        if dataset is not None:
            config["dataset"] = as_dataset(dataset).describe()
            if isinstance(dataset, str | os.PathLike) and Path(dataset).is_dir():
                config["dataset"]["path"] = str(Path(dataset).resolve())
        out = cls(spec, params, preprocess_stats(spec, np.zeros((0, spec.input_dim))), config)
        if dataset is not None:  # what `digitnet runs`, compare and ensembles show
            test = out.evaluate()
            config["metrics"] = {"test_loss": test.loss, "test_accuracy": test.accuracy}
        return out

    def logits(self, x: Any) -> np.ndarray:
        """Scores (N, classes) whose softmax is predict_proba: the network's outputs, or for a
        one-sigmoid-unit model (a binary classifier) the pair (0, z) (class_logits)."""
        x = self._inputs(x)
        z = finite_logits(self.spec, self.params, self.stats, x,
                          predict_logits(self.spec, self.params, self.stats, x))
        return class_logits(self.spec, z)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities (N, classes) for raw images (N, H, W) or (N, H*W), or one image;
        for a binary model (one sigmoid unit z), (1 - sigmoid(z), sigmoid(z))."""
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
        if self.spec.output_units == 1 and y.dtype.kind in "biuf":
            y = binary_labels(y)
        one_hot = y.ndim == 2 and y.shape[1] == self.spec.num_classes
        if not (y.ndim == 1 and y.dtype.kind in "iu" or one_hot) or len(y) != len(x):
            raise ConfigError(f"labels must be integers (or one-hot rows), one per image; got "
                              f"shape {y.shape} ({y.dtype}) for {len(x)} images")
        ev = evaluate_arrays(self.spec, self.params, self.stats, x, y)
        if not np.isfinite(ev.loss):
            self.logits(x)  # NaN or infinite outputs: its error says in which layer
            raise DigitnetError(f"the loss is {ev.loss} on finite outputs: they are too far apart "
                                f"for float32")
        return ev

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


def class_logits(spec: MLPSpec, z: np.ndarray) -> np.ndarray:
    """The network's outputs z as one score per class: as they are for a softmax over the
    classes; for one sigmoid unit, (0, z), whose softmax is (1 - sigmoid(z), sigmoid(z)) and
    whose argmax is z > 0, Keras' binary accuracy rule."""
    if spec.output_units != 1:
        return z
    return np.concatenate([np.zeros_like(z), z], axis=1)


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


def load(path: str | os.PathLike) -> Any:
    """Load a run directory written by `digitnet train` or `Model.save`: a Model, or a
    digitnet.ensemble.Ensemble for a directory written by `digitnet ensemble` or
    `train --ensemble`."""
    path = art.check_run_dir(Path(path))
    enable_compile_cache()
    config = art.read_json(path / art.CONFIG)
    if config.get("format") == ensemble.FORMAT:
        return ensemble.from_config(config, path, Model)
    if config.get("format") != art.FORMAT:
        raise ModelFileError(f"{path / art.CONFIG}: not a digitnet run config")
    spec = art.spec_from_config(config, path)
    tensors, _ = art.read_tensors(path / art.WEIGHTS, art.weights_bytes([spec]))
    params = art.tensors_to_params(tensors, spec, path / art.WEIGHTS)
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


def validation_rows(n: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(training rows, held-out rows) of n training examples when the config holds out a
    fraction, else None."""
    if cfg.validation in ("none", "test"):
        return None
    n_val = max(1, round(n * float(cfg.validation)))
    order = np.random.default_rng(cfg.seed).permutation(n)
    return np.sort(order[:-n_val]), np.sort(order[-n_val:])


def split_validation(ds: Dataset, cfg: TrainConfig):
    """(x_train, y_train, validation or None) as the config asks."""
    if cfg.validation == "none":
        return ds.x_train, ds.y_train, None
    if cfg.validation == "test":
        return ds.x_train, ds.y_train, (ds.x_test, ds.y_test)
    tr, va = validation_rows(len(ds.y_train), cfg)
    return ds.x_train[tr], ds.y_train[tr], (ds.x_train[va], ds.y_train[va])


@dataclass
class RunSetup:
    """One model about to train: its data, callbacks, run directory and starting state."""

    spec: MLPSpec
    cfg: TrainConfig
    ds: Dataset
    stats: dict[str, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None
    rows: np.ndarray | None  # the training rows of ds.x_train (None: all)
    callbacks: list[Callback]
    config_doc: dict[str, Any]
    run_dir: Path | None
    state: TrainState | None


def setup_run(spec: MLPSpec | None, cfg: TrainConfig | None, dataset: str | Dataset, *,
              data_dir: str | os.PathLike | None, out: str | os.PathLike | None, resume: bool,
              verbose: bool, callbacks: list[Callback] | None, recipe: str | None,
              stats_cache: dict | None = None) -> RunSetup:
    """Everything fit does before training: the data, the run directory (its config.json says
    "training"; a checkpoint to resume from is read). `recipe` is only recorded."""
    spec = spec or MLPSpec()
    cfg = cfg or TrainConfig()
    enable_compile_cache()
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    spec = spec.for_data(ds.image_shape, ds.num_classes)
    split = validation_rows(len(ds.y_train), cfg)
    rows = None if split is None else split[0]
    cfg = with_class_weights(cfg, ds.y_train if rows is None else ds.y_train[rows],
                             spec.num_classes)
    val = (None if cfg.validation == "none" else (ds.x_test, ds.y_test) if split is None
           else (ds.x_train[split[1]], ds.y_train[split[1]]))
    # Members of a population that train on the same rows share their preprocessing stats.
    key = (spec.preprocess, spec.deskew, spec.input_shape, id(ds), None if split is None else cfg.seed,
           cfg.validation)
    if stats_cache is not None and key in stats_cache:
        stats = stats_cache[key]
    else:
        stats = preprocess_stats(spec, ds.x_train if rows is None else ds.x_train[rows])
        if stats_cache is not None:
            stats_cache[key] = stats
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
        n_train = len(ds.y_train) if rows is None else len(rows)
        if resume and (run_dir / art.CHECKPOINT).exists():
            state = art.load_checkpoint(run_dir, spec, cfg, n_train)
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
    return RunSetup(spec, cfg, ds, stats, val, rows, cbs, config_doc, run_dir, state)


def finish_run(run: RunSetup, state: TrainState, train_seconds: float,
               extra: dict[str, Any] | None = None) -> Model:
    """Evaluate the trained weights on the test set and save the run directory."""
    params = jax.tree.map(np.asarray, state.weights())
    test = evaluate_arrays(run.spec, params, run.stats, run.ds.x_test, run.ds.y_test)
    config_doc = dict(run.config_doc)
    config_doc.update(
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        versions=versions(),
        device=device(),
        metrics={"test_loss": test.loss, "test_accuracy": test.accuracy,
                 "epochs": state.epoch, "train_seconds": round(train_seconds, 3),
                 **{k: v for k, v in (state.history[-1] if state.history else {}).items()
                    if k not in ("epoch", "seconds")}},
        **(extra or {}),
    )
    if run.cfg.label_smoothing:  # two losses of one set would otherwise look contradictory
        config_doc["metrics"]["loss_notes"] = {
            "loss": f"training objective: cross-entropy with label smoothing {run.cfg.label_smoothing:g}",
            "val_loss": f"cross-entropy with label smoothing {run.cfg.label_smoothing:g}",
            "test_loss": "plain cross-entropy"}
    if run.cfg.class_weight:  # the training loss is weighted, the others are not (as Keras')
        notes = config_doc["metrics"].setdefault("loss_notes", {})
        notes["loss"] = (notes.get("loss", "training objective") + "; each example's loss "
                         "weighted by its class (class_weight)")
        notes.setdefault("val_loss", "unweighted")
        notes.setdefault("test_loss", "unweighted")
    model = Model(run.spec, params, run.stats, config_doc, state.history)
    if run.run_dir is not None:
        model.save(run.run_dir)
    return model


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
    seeds: Iterable[int] | None = None,
    **options: Any,
) -> Any:
    """Train an MLP (by default the tutorial's 784-64-64-10 on MNIST) and return it.

    With `out`, the run directory is written there: a checkpoint every epoch, then the final
    model. `resume=True` continues from that directory's last checkpoint. `recipe` (a name from
    digitnet.recipes.recipe_names(), e.g. "best") supplies the spec and config not given.
    `settings` says how the engine runs (digitnet.engine.EngineSettings; this machine's
    defaults when None): speed, not results.

    Keywords set single options over those: `fit(hidden=(128,), dropout=0.5, epochs=3)`.

    `seeds=range(8)` trains one model per seed, together (digitnet.population), and returns
    a digitnet.seeds.SeedRuns (a list of Models with their summary); with `out`, each is saved
    in out/seed-N and the summary in out/summary.json.
    """
    spec, config = resolved(spec, config, recipe, options)
    if seeds is not None:
        return fit_seeds(spec, config, dataset, seeds, data_dir=data_dir, out=out, resume=resume,
                         verbose=verbose, callbacks=callbacks, recipe=recipe, settings=settings)
    run = setup_run(spec, config, dataset, data_dir=data_dir, out=out, resume=resume,
                    verbose=verbose, callbacks=callbacks, recipe=recipe)
    x, y = run.ds.x_train, run.ds.y_train
    if run.rows is not None:
        x, y = x[run.rows], y[run.rows]
    t0 = time.perf_counter()
    state = fit_arrays(run.spec, run.cfg, x, y, run.stats, run.validation, state=run.state,
                       callbacks=run.callbacks, settings=settings)
    return finish_run(run, state, time.perf_counter() - t0)


def resolved(spec: MLPSpec | None, config: TrainConfig | None, recipe: str | None,
             options: dict[str, Any]) -> tuple[MLPSpec | None, TrainConfig | None]:
    """spec and config with a recipe under them and single options over them."""
    if recipe is not None or options:
        from digitnet.config import resolve

        given = {**(spec.to_dict() if spec else {}), **(config.to_dict() if config else {})}
        spec, config, _ = resolve({**given, **options}, recipe=recipe)
    return spec, config


def fit_seeds(spec: MLPSpec | None, config: TrainConfig | None, dataset: str | Dataset,
              seeds: Iterable[int], *, data_dir: str | os.PathLike | None = None,
              out: str | os.PathLike | None = None, resume: bool = False, verbose: bool = True,
              callbacks: list[Callback] | None = None, recipe: str | None = None,
              settings: EngineSettings | None = None, summary: bool = True,
              **options: Any) -> SeedRuns:
    """fit() once per seed, all trained together (digitnet.population): see fit(seeds=...).
    summary=False writes no `out`/summary.json (a `train --seeds` worker's share of the seeds:
    digitnet.cli.seed_workers writes the whole one)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from digitnet.population import fit_members, member_of, population_doc

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("seeds must be distinct integers, at least one")
    spec, config = resolved(spec, config, recipe, options)
    spec, config = spec or MLPSpec(), config or TrainConfig()
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    out_dir = Path(out) if out is not None else None
    t0 = time.perf_counter()
    cache: dict = {}
    runs = [setup_run(spec, replace(config, seed=s), ds, data_dir=data_dir,
                      out=out_dir / f"seed-{s}" if out_dir else None, resume=resume,
                      verbose=verbose and i == 0, callbacks=callbacks, recipe=recipe,
                      stats_cache=cache)
            for i, s in enumerate(seeds)]
    members = [member_of(r) for r in runs]
    fit_members(members, ds.x_train, ds.y_train, settings=settings)
    failed = [m for m in members if m.error is not None]
    if failed:
        raise failed[0].error
    # Each run directory's files are fsynced: saved side by side, the waits overlap.
    with ThreadPoolExecutor(max_workers=min(8, len(runs)), thread_name_prefix="digitnet-save") as pool:
        models = SeedRuns(pool.map(lambda r, m: finish_run(r, m.state, m.seconds / m.together,
                                                           population_doc(m)), runs, members))
    models.summary = summarize([m.config for m in models], seeds, time.perf_counter() - t0)
    if out_dir is not None and summary:
        art.write_json(out_dir / SUMMARY, models.summary)
    return models


def ensemble_of(models: list[Any], out: str | os.PathLike | None = None) -> Ensemble:
    """The models (or ensembles) as one ensemble, evaluated on their dataset's test split (its
    config.json's metrics), saved in `out` when given."""
    ens = Ensemble(models, {"versions": versions()})
    ens.record_test_metrics()
    if out is not None:
        ens.save(out)
    return ens


def combine(runs: list[str | os.PathLike], out: str | os.PathLike) -> Ensemble:
    """`digitnet ensemble RUN… --out DIR`: the runs (or ensembles) as one ensemble, evaluated on
    the test set and saved in `out`."""
    if not runs:
        raise ConfigError("give the run directories to combine")
    models = []
    for run in runs:
        m = load(run)
        m.config = {**m.config, "source": str(Path(run).resolve())}
        models.append(m)
    names = {str(m.config.get("dataset", {}).get("name")) for m in models}
    if len(names) > 1:
        raise ConfigError(f"the runs were trained on different datasets: {', '.join(sorted(names))}")
    return ensemble_of(models, out)

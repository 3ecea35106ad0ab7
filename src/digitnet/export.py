"""Export a trained model to ONNX, built node by node with onnx.helper (no other framework).

The graph takes what digitnet takes: raw pixels, uint8 [N, 28, 28], and does the model's own
preprocessing ((x - shift) * scale, per pixel, from the run's weights file) inside, so a client
needs nothing but an ONNX runtime. Outputs: "probabilities" float32 [N, classes] (softmax) and
"logits" float32 [N, classes].
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import __version__
from digitnet import artifacts as art
from digitnet.api import Model
from digitnet.errors import ConfigError
from digitnet.model import batchnorm_affine, input_norm_weights
from digitnet.spec import parse_activation

FORMATS = ("onnx",)
MIN_OPSET = 17
# The lowest IR version that carries opset 17: runtimes from 2022 on can read the file.
IR_VERSION = 8


def activation_nodes(name: str, x: str, out: str, helper: Any) -> list[Any]:
    """ONNX nodes computing digitnet's activation `name` (with its Keras constants and options,
    "leaky_relu(negative_slope=0.3)" too)."""
    base, options = parse_activation(name)
    single = {"relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}),
              "elu": ("Elu", {"alpha": options.get("alpha", 1.0)}),
              "leaky_relu": ("LeakyRelu", {"alpha": options.get("negative_slope", 0.2)}),
              "selu": ("Selu", {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805}),
              "linear": ("Identity", {}), "softplus": ("Softplus", {}), "softsign": ("Softsign", {}),
              "exponential": ("Exp", {}), "celu": ("Celu", {"alpha": options.get("alpha", 1.0)}),
              "hard_sigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
              "hard_silu": ("HardSwish", {})}
    n = helper.make_node

    def c(suffix: str, value: float) -> Any:  # a scalar constant, named after the output
        return n("Constant", [], [f"{out}_{suffix}"], value_float=float(value))

    if name in single or (base in single and base != "relu"):
        op, attrs = single[base]
        return [n(op, [x], [out], **attrs)]
    if name == "gelu":  # exact GELU: x/2 · (1 + erf(x/√2)); the Gelu op needs opset 20
        return [c("k", 1 / math.sqrt(2)), c("one", 1.0), c("half", 0.5),
                n("Mul", [x, f"{out}_k"], [f"{out}_s"]),
                n("Erf", [f"{out}_s"], [f"{out}_e"]),
                n("Add", [f"{out}_e", f"{out}_one"], [f"{out}_p"]),
                n("Mul", [x, f"{out}_p"], [f"{out}_m"]),
                n("Mul", [f"{out}_m", f"{out}_half"], [out])]
    if name in ("silu", "mish"):  # x·sigmoid(x); x·tanh(softplus(x)) (Mish needs opset 18)
        inner = [n("Sigmoid", [x], [f"{out}_g"])] if name == "silu" else [
            n("Softplus", [x], [f"{out}_sp"]), n("Tanh", [f"{out}_sp"], [f"{out}_g"])]
        return [*inner, n("Mul", [x, f"{out}_g"], [out])]
    if name in ("relu6", "hard_tanh"):
        low, high = (0.0, 6.0) if name == "relu6" else (-1.0, 1.0)
        return [c("lo", low), c("hi", high), n("Clip", [x, f"{out}_lo", f"{out}_hi"], [out])]
    if name == "log_sigmoid":  # -softplus(-x)
        return [n("Neg", [x], [f"{out}_n"]), n("Softplus", [f"{out}_n"], [f"{out}_sp"]),
                n("Neg", [f"{out}_sp"], [out])]
    if base == "relu":  # Keras' relu with options, as digitnet.model.keras_relu computes it
        slope, top, threshold = options["negative_slope"], options["max_value"], options["threshold"]
        if slope and top is None and not threshold:
            return [n("LeakyRelu", [x], [out], alpha=slope)]
        nodes = [c("zero", 0.0), c("th", threshold)]
        nodes.append(n("Greater", [x, f"{out}_th"], [f"{out}_gt"]))
        nodes.append(n("Where", [f"{out}_gt", x, f"{out}_zero"], [f"{out}_pos"]))
        pos = f"{out}_pos"
        if top is not None:
            nodes += [c("top", top), n("Clip", [pos, f"{out}_zero", f"{out}_top"], [f"{out}_clip"])]
            pos = f"{out}_clip"
        if not slope:
            return [*nodes, n("Identity", [pos], [out])]
        return [*nodes, c("slope", slope),
                n("Sub", [f"{out}_th", x], [f"{out}_d"]), n("Relu", [f"{out}_d"], [f"{out}_neg"]),
                n("Mul", [f"{out}_neg", f"{out}_slope"], [f"{out}_sn"]),
                n("Sub", [pos, f"{out}_sn"], [out])]
    raise ConfigError(f"cannot export activation {name!r} to ONNX")


def deskew_nodes(x: str, out: str, shape: tuple[int, ...], opset: int) -> tuple[list, list]:
    """ONNX nodes and constants for digitnet.deskew on float images x (N, H, W): the moments by
    reductions, then bilinear sampling by GridSample (zero padding, corners aligned to pixel
    centres, as map_coordinates samples), rounded to whole pixel values."""
    from onnx import helper, numpy_helper

    h, w = shape
    r, c = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    dr = np.broadcast_to((r - (h - 1) / 2)[:, None], (h, w))
    dc = np.broadcast_to((c - (w - 1) / 2)[None, :], (h, w))
    consts = {"dk_r": r, "dk_c": c, "dk_r2": r * r, "dk_rc": np.outer(r, c), "dk_dr": dr,
              "dk_dc": dc, "dk_eps": np.array(1e-6), "dk_var_min": np.array(1e-3),
              "dk_zero": np.array(0.0), "dk_max": np.array(255.0),
              "dk_sy": np.array(2 / (h - 1)), "dk_sx": np.array(2 / (w - 1)), "dk_one": np.array(1.0)}
    inits = [numpy_helper.from_array(np.ascontiguousarray(v, np.float32), k) for k, v in consts.items()]
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
              (("dk_ax1", [1]), ("dk_ax2", [2]), ("dk_ax12", [1, 2]), ("dk_ax3", [3]))]
    n = helper.make_node
    nodes = [
        n("ReduceSum", [x, "dk_ax2"], ["dk_rows"], keepdims=0),  # (N, H)
        n("ReduceSum", [x, "dk_ax1"], ["dk_cols"], keepdims=0),  # (N, W)
        n("ReduceSum", ["dk_rows", "dk_ax1"], ["dk_mass"], keepdims=0),
        n("Max", ["dk_mass", "dk_eps"], ["dk_safe"]),
        n("MatMul", ["dk_rows", "dk_r"], ["dk_r_sum"]),
        n("Div", ["dk_r_sum", "dk_safe"], ["dk_r_mean"]),
        n("MatMul", ["dk_cols", "dk_c"], ["dk_c_sum"]),
        n("Div", ["dk_c_sum", "dk_safe"], ["dk_c_mean"]),
        n("MatMul", ["dk_rows", "dk_r2"], ["dk_r2_sum"]),
        n("Div", ["dk_r2_sum", "dk_safe"], ["dk_r2_mean"]),
        n("Mul", ["dk_r_mean", "dk_r_mean"], ["dk_r_mean_sq"]),
        n("Sub", ["dk_r2_mean", "dk_r_mean_sq"], ["dk_r_var"]),
        n("Mul", [x, "dk_rc"], ["dk_xrc"]),
        n("ReduceSum", ["dk_xrc", "dk_ax12"], ["dk_rc_sum"], keepdims=0),
        n("Div", ["dk_rc_sum", "dk_safe"], ["dk_rc_mean"]),
        n("Mul", ["dk_r_mean", "dk_c_mean"], ["dk_rc_means"]),
        n("Sub", ["dk_rc_mean", "dk_rc_means"], ["dk_cov"]),
        n("Max", ["dk_r_var", "dk_var_min"], ["dk_var_safe"]),
        n("Div", ["dk_cov", "dk_var_safe"], ["dk_ratio"]),
        n("Greater", ["dk_r_var", "dk_var_min"], ["dk_has_var"]),
        n("Where", ["dk_has_var", "dk_ratio", "dk_zero"], ["dk_alpha"]),
        # Sampling positions (N, H, W), in pixels, then in GridSample's [-1, 1] coordinates.
        n("Unsqueeze", ["dk_r_mean", "dk_ax12"], ["dk_r_mean3"]),
        n("Unsqueeze", ["dk_c_mean", "dk_ax12"], ["dk_c_mean3"]),
        n("Unsqueeze", ["dk_alpha", "dk_ax12"], ["dk_alpha3"]),
        n("Add", ["dk_r_mean3", "dk_dr"], ["dk_y"]),
        n("Mul", ["dk_alpha3", "dk_dr"], ["dk_slant"]),
        n("Add", ["dk_c_mean3", "dk_dc"], ["dk_x0"]),
        n("Add", ["dk_x0", "dk_slant"], ["dk_x"]),
        n("Mul", ["dk_y", "dk_sy"], ["dk_y2"]),
        n("Sub", ["dk_y2", "dk_one"], ["dk_gy"]),
        n("Mul", ["dk_x", "dk_sx"], ["dk_x2"]),
        n("Sub", ["dk_x2", "dk_one"], ["dk_gx"]),
        n("Unsqueeze", ["dk_gx", "dk_ax3"], ["dk_gx4"]),
        n("Unsqueeze", ["dk_gy", "dk_ax3"], ["dk_gy4"]),
        n("Concat", ["dk_gx4", "dk_gy4"], ["dk_grid"], axis=3),
        n("Unsqueeze", [x, "dk_ax1"], ["dk_image4"]),
        n("GridSample", ["dk_image4", "dk_grid"], ["dk_sampled"], align_corners=1,
          mode="linear" if opset >= 20 else "bilinear", padding_mode="zeros"),
        n("Clip", ["dk_sampled", "dk_zero", "dk_max"], ["dk_clipped"]),
        n("Round", ["dk_clipped"], [out]),
    ]
    return nodes, inits


def const(key: str, value: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), key)


def network_nodes(model: Model, prefix: str, logits: str) -> tuple[list, list]:
    """ONNX nodes and weights of one MLP, from the flattened pixels ("flat", or
    "flat_deskewed" for a model that deskews) to its logits; names start with `prefix`."""
    from onnx import helper

    spec, p = model.spec, prefix
    inits = [const(f"{p}preprocess_shift", model.stats["shift"]),
             const(f"{p}preprocess_scale", model.stats["scale"])]
    nodes = [helper.make_node("Sub", ["flat_deskewed" if spec.deskew else "flat",
                                      f"{p}preprocess_shift"], [f"{p}shifted"]),
             helper.make_node("Mul", [f"{p}shifted", f"{p}preprocess_scale"], [f"{p}h0"])]
    h = f"{p}h0"

    def normalize(weights: dict[str, Any], epsilon: float, name: str, x: str, out: str) -> None:
        """A batch normalization at inference: out = x · inv + res per unit (batchnorm_affine)."""
        inv, res = batchnorm_affine(weights, epsilon)
        inits.extend([const(f"{name}.inv", inv), const(f"{name}.res", res)])
        nodes.extend([helper.make_node("Mul", [x, f"{name}.inv"], [f"{out}_scaled"]),
                      helper.make_node("Add", [f"{out}_scaled", f"{name}.res"], [out])])

    if spec.input_batchnorm:
        normalize(input_norm_weights(model.params[0]), spec.input_batchnorm_epsilon,
                  f"{p}input_batch_normalization", h, f"{p}h0_normalized")
        h = f"{p}h0_normalized"
    last = len(model.params) - 1
    for i, layer in enumerate(model.params):
        inits += [const(f"{p}dense_{i}.kernel", np.asarray(layer["kernel"])),
                  const(f"{p}dense_{i}.bias", np.asarray(layer["bias"]))]
        binary = i == last and spec.output_units == 1
        pre = f"{p}dense_{i}" if i < last or binary else logits
        nodes += [helper.make_node("MatMul", [h, f"{p}dense_{i}.kernel"], [f"{p}dense_{i}_mm"]),
                  helper.make_node("Add", [f"{p}dense_{i}_mm", f"{p}dense_{i}.bias"], [pre])]
        if i < last:  # dropout is identity at inference
            h = f"{p}h{i + 1}"
            where, name = spec.batchnorm_of(i), f"{p}batch_normalization_{i}"
            if where == "before":
                normalize(layer, spec.batchnorm_epsilon[i], name, pre, f"{pre}_normalized")
                pre = f"{pre}_normalized"
            act_out = f"{h}_activated" if where == "after" else h
            nodes += activation_nodes(spec.hidden_activations[i], pre, act_out, helper)
            if where == "after":
                normalize(layer, spec.batchnorm_epsilon[i], name, act_out, h)
    if spec.output_units == 1:  # one sigmoid unit z: the class scores (0, z), as Model.logits
        nodes += [helper.make_node("Sub", [pre, pre], [f"{p}zero"]),
                  helper.make_node("Concat", [f"{p}zero", pre], [logits], axis=1)]
    return nodes, inits


def to_onnx(model: Model, opset: int = MIN_OPSET, name: str = "digitnet") -> Any:
    """The ONNX ModelProto for `model` (checked by onnx.checker)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'digitnet[onnx]'"
                          " (or 'digitnet[all]')") from None
    newest = onnx.defs.onnx_opset_version()  # an opset the onnx package does not know is refused
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"opset must be within {MIN_OPSET}…{newest}, got {opset!r}")
    from digitnet.ensemble import Ensemble

    spec = model.spec
    members = model.members if isinstance(model, Ensemble) else [model]
    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(np.array([-1, spec.input_dim], np.int64), "flat_shape")]
    if not all(m.spec.deskew for m in members):
        nodes.append(helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]))
    if any(m.spec.deskew for m in members):  # the same deskewed images for every member
        more_nodes, more_inits = deskew_nodes("pixels", "deskewed", spec.input_shape, opset)
        nodes += [*more_nodes, helper.make_node("Reshape", ["deskewed", "flat_shape"],
                                                ["flat_deskewed"])]
        inits += more_inits
    if len(members) == 1:
        more_nodes, more_inits = network_nodes(model, "", "logits")
        nodes += [*more_nodes, helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
        inits += more_inits
    else:
        # The mean of the members' softmax outputs; logits = log(probabilities).
        for i, m in enumerate(members):
            more_nodes, more_inits = network_nodes(m, f"member_{i}.", f"member_{i}.logits")
            nodes += [*more_nodes, helper.make_node("Softmax", [f"member_{i}.logits"],
                                                    [f"member_{i}.probabilities"], axis=-1)]
            inits += more_inits
        inits.append(const("ensemble_size", np.array(float(len(members)))))
        nodes += [helper.make_node("Sum", [f"member_{i}.probabilities" for i in range(len(members))],
                                   ["probability_sum"]),
                  helper.make_node("Div", ["probability_sum", "ensemble_size"], ["probabilities"]),
                  helper.make_node("Log", ["probabilities"], ["logits"])]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", *spec.input_shape])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", spec.num_classes]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", spec.num_classes])],
        inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="digitnet", producer_version=__version__,
                              ir_version=IR_VERSION,
                              doc_string="input: raw pixels uint8 [N, H, W] (MNIST form: white digit "
                                         "on black); outputs: probabilities and logits [N, classes]")
    props = {"digitnet.model": json.dumps(spec.to_dict()),
             "digitnet.metrics": json.dumps(model.config.get("metrics", {}))}
    if len(members) > 1:
        props["digitnet.ensemble"] = json.dumps([m.spec.to_dict() for m in members])
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(run: str | os.PathLike, fmt: str = "onnx", out: str | os.PathLike | None = None,
           opset: int = MIN_OPSET) -> Path:
    """Write the run's model as `fmt` (default file: RUN/model.onnx); returns the path."""
    from digitnet.api import load

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    model = load(run)
    path = Path(out) if out is not None else art.check_run_dir(Path(run)) / "model.onnx"
    art.atomic_write_bytes(path, to_onnx(model, opset).SerializeToString())
    return path

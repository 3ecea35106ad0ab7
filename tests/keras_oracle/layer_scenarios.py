"""Scenarios of the MLP layers and options beyond Dense/Dropout (activation layers and names,
input scaling, regularizers, initializers), run twice like tests/keras_oracle/scenarios.py: by
scripts/keras_record.py with real Keras 3 (recorded in tests/fixtures/keras/layers_behaviour.json)

    KERAS_BACKEND=jax /work/venvs/keras/bin/python scripts/keras_record.py \
        tests/fixtures/keras/layers_behaviour.json --scenarios tests.keras_oracle.layer_scenarios

and by tests/test_keras_layers.py with digitnet.keras. Weights are set explicitly wherever values
are compared."""

from __future__ import annotations

import warnings

import numpy as np

from tests.keras_oracle.scenarios import IMAGES, W, X, Y, arr

V = np.linspace(-7, 7, 15, dtype=np.float32).reshape(1, -1)  # values around every kink

ACTIVATION_NAMES = ["relu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu", "selu", "linear", "softplus",
                    "softsign", "swish", "silu", "hard_sigmoid", "hard_silu", "hard_swish", "mish",
                    "exponential", "relu6", "celu", "hard_tanh", "log_sigmoid"]


def activation_layers(keras):
    L = keras.layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = L.LeakyReLU(alpha=0.1)
    return {
        "leaky_default": L.LeakyReLU(), "leaky_01": L.LeakyReLU(negative_slope=0.1), "leaky_alpha": old,
        "elu_default": L.ELU(), "elu_05": L.ELU(0.5), "relu_default": L.ReLU(), "relu6": L.ReLU(6.0),
        "relu_max": L.ReLU(max_value=4.0), "relu_slope": L.ReLU(negative_slope=0.2),
        "relu_all": L.ReLU(max_value=4.0, negative_slope=0.1, threshold=0.5),
        "relu_threshold": L.ReLU(threshold=1.0), "relu6_slope": L.ReLU(6, negative_slope=0.1),
        "act_swish": L.Activation("swish"), "act_mish": L.Activation("mish"),
    }


def config(layer) -> dict:
    c = layer.get_config()
    return {k: v for k, v in c.items() if k not in ("name", "dtype", "trainable")}


def s_activation_layers(keras):
    return {key: {"class": type(layer).__name__, "config": config(layer), "out": arr(layer(V))}
            for key, layer in activation_layers(keras).items()}


def s_activation_names(keras):
    out = {}
    for name in ACTIVATION_NAMES:
        layer = keras.layers.Dense(3, activation=name)
        out[name] = [layer.get_config()["activation"], arr(keras.activations.get(name)(V))]
    return out


def hidden_model(keras, act_layer=None, activation=None):
    layers = [keras.Input((784,)), keras.layers.Dense(16, activation=activation)]
    if act_layer is not None:
        layers.append(act_layer)
    model = keras.Sequential([*layers, keras.layers.Dense(10)])
    model.set_weights(W)
    return model


def s_activation_models(keras):
    """Models with each activation (layer or name) on the hidden layer: predict runs the
    compiled engine's forward pass."""
    L = keras.layers
    out = {name: arr(hidden_model(keras, activation=name).predict(X[:4] * 4 - 2, verbose=0))
           for name in ACTIVATION_NAMES}
    for key, layer in activation_layers(keras).items():
        out[key] = arr(hidden_model(keras, act_layer=layer).predict(X[:4] * 4 - 2, verbose=0))
    model = hidden_model(keras, act_layer=L.LeakyReLU(0.1))
    out["layers"] = [type(layer).__name__ for layer in model.layers]
    out["weights"] = len(model.get_weights())
    return out


def s_activation_errors(keras):
    L = keras.layers
    out = {}
    for key, make in [("relu_max", lambda: L.ReLU(max_value=-1.0)),
                      ("relu_slope", lambda: L.ReLU(negative_slope=-0.5)),
                      ("relu_threshold", lambda: L.ReLU(threshold=-1.0)),
                      ("leaky", lambda: L.LeakyReLU(negative_slope=-0.1))]:
        try:
            make()
            out[key] = None
        except ValueError as exc:
            out[key] = str(exc)
    return out


def rescaling_model(keras):
    L = keras.layers
    model = keras.Sequential([L.Rescaling(1.0 / 255, input_shape=(28, 28)), L.Flatten(),
                              L.Dense(16, activation="relu"), L.Dense(10)])
    model.set_weights(W)
    return model


def s_rescaling(keras):
    L = keras.layers
    pixels = np.round(IMAGES[:4] * 255)
    model = rescaling_model(keras)
    offset = keras.Sequential([keras.Input((784,)), L.Rescaling(1.0 / 127.5, offset=-1.0),
                               L.Dense(16, activation="relu"), L.Dense(10, activation="softmax")])
    offset.set_weights(W)
    inputs = keras.Input((784,))
    h = L.Rescaling(0.5)(L.Rescaling(2.0, offset=0.25)(inputs))
    functional = keras.Model(inputs, L.Dense(10)(L.Dense(16, activation="tanh")(h)))
    functional.set_weights(W)
    return {"unit": arr(model.predict(pixels, verbose=0)),
            "unit_call": arr(np.asarray(model(pixels))),
            "offset": arr(offset.predict(pixels.reshape(-1, 784), verbose=0)),
            "two": arr(functional.predict(X[:4], verbose=0)),
            "layer": arr(L.Rescaling(2.0, offset=1.0)(V)),
            "config": config(L.Rescaling(1.0 / 255)),
            "layers": [type(layer).__name__ for layer in model.layers],
            "weights": len(model.get_weights())}


def s_rescaling_fit(keras):
    """A TensorFlow-tutorial model (Rescaling first, logits) trains on raw pixels."""
    model = rescaling_model(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(np.round(IMAGES * 255), Y, epochs=2, batch_size=100, shuffle=False, verbose=0)
    return {k: [round(v, 4) for v in vs] for k, vs in history.history.items()}




def regularized_model(keras):
    R = keras.regularizers
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(16, activation="relu", kernel_regularizer=R.l2(0.01),
                                                 bias_regularizer=R.l1(0.001)),
                              keras.layers.Dense(10, activation="softmax",
                                                 kernel_regularizer=R.l1_l2(l1=0.001, l2=0.001),
                                                 bias_regularizer=R.L1L2(l1=0.01, l2=0.02))])
    model.set_weights(W)
    return model


def s_regularizers(keras):
    """The penalty is in the loss fit and evaluate report, and in the gradient (plain SGD, no
    shuffling: the weights after two epochs are Keras')."""
    R = keras.regularizers
    model = regularized_model(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.evaluate(X, Y, batch_size=100, verbose=0)
    history = model.fit(X, Y, epochs=2, batch_size=25, shuffle=False, verbose=0,
                        validation_data=(X[:50], Y[:50]))
    weights = model.get_weights()
    l2_only = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, kernel_regularizer="l2"),
                                keras.layers.Dense(10)])
    l2_only.set_weights(W)
    l2_only.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return {"before": [round(v, 5) for v in before],
            "history": {k: [round(v, 5) for v in vs] for k, vs in history.history.items()},
            "kernel": arr(weights[0][:3, :4]), "bias": arr(weights[1][:6]), "out_bias": arr(weights[3]),
            "l2_only": round(float(l2_only.evaluate(X, Y, verbose=0)), 5),
            "configs": [r.get_config() for r in (R.l2(0.001), R.l1(0.001), R.l1_l2(l1=0.01), R.L1L2(),
                                                 R.get("l2"), R.get("l1l2"), R.get("L1"))],
            "dense_config": {k: model.layers[0].get_config()[k]
                             for k in ("kernel_regularizer", "bias_regularizer")},
            "call": round(float(R.L1L2(0.01, 0.02)(W[0])), 4)}


def s_initializers(keras):
    I = keras.initializers  # noqa: E741
    L = keras.layers

    def built(**options):
        layer = L.Dense(512, **options)
        keras.Sequential([keras.Input((784,)), layer])
        return layer.get_weights()

    out = {}
    for name, expected in [("glorot_uniform", np.sqrt(2 / (784 + 512))), ("he_normal", np.sqrt(2 / 784)),
                           ("he_uniform", np.sqrt(2 / 784)), ("lecun_normal", np.sqrt(1 / 784)),
                           ("glorot_normal", np.sqrt(2 / (784 + 512)))]:
        kernel = built(kernel_initializer=name)[0]
        out[name] = [bool(abs(kernel.std() / expected - 1) < 0.03), bool(abs(kernel.mean()) < 0.002)]
    kernel, bias = built(kernel_initializer=I.RandomNormal(stddev=0.1, seed=3),
                         bias_initializer=I.Constant(0.1))
    again = built(kernel_initializer=I.RandomNormal(stddev=0.1, seed=3))[0]
    out["random_normal"] = [bool(abs(kernel.std() / 0.1 - 1) < 0.03), bool(np.array_equal(kernel, again)),
                            arr(bias[:3])]
    out["uniform"] = [round(float(np.abs(built(kernel_initializer=I.RandomUniform(-0.2, 0.2))[0]).max()), 2)]
    out["ones_zeros"] = [arr(w[:2, :2] if w.ndim == 2 else w[:2])
                         for w in built(kernel_initializer="ones", bias_initializer="zeros")]
    out["configs"] = {name: L.Dense(3, kernel_initializer=name).get_config()["kernel_initializer"][
        "class_name"] for name in ("normal", "uniform", "truncated_normal", "he_normal", "zeros", "one")}
    out["serialized"] = L.Dense(3, kernel_initializer=I.RandomNormal(stddev=0.1, seed=3),
                                bias_initializer=I.Constant(0.1)).get_config()["bias_initializer"]
    return out


def normalized_model(keras):
    L = keras.layers
    norm = L.Normalization()
    norm.adapt(IMAGES[:60] * 255)
    model = keras.Sequential([keras.Input((28, 28)), norm, L.Flatten(), L.Dense(16, activation="relu"),
                              L.Dense(10)])
    model.layers[2].set_weights(W[:2])
    model.layers[3].set_weights(W[2:])
    return model


def s_normalization(keras, tmp):
    """An adapted Normalization first (per image column, then Flatten), and fixed statistics."""
    L = keras.layers
    model = normalized_model(keras)
    model.summary()
    weights = model.get_weights()
    fixed = keras.Sequential([keras.Input((784,)), L.Normalization(axis=None, mean=100.0, variance=900.0),
                              L.Dense(16, activation="relu"), L.Dense(10)])
    fixed.set_weights(W)
    pixels = IMAGES[60:64] * 255
    out = {"predict": arr(model.predict(pixels, verbose=0)),
           "call": arr(np.asarray(model(pixels))),
           "shapes": [list(np.shape(w)) for w in weights], "count": int(weights[2]),
           "mean": arr(weights[0][:4]), "variance": arr(weights[1][:4]),
           "fixed": arr(fixed.predict(pixels.reshape(-1, 784), verbose=0)),
           "fixed_weights": len(fixed.get_weights()), "count_params": model.count_params(),
           "config": config(L.Normalization(axis=None, mean=100.0, variance=900.0))}
    model.save(f"{tmp}/n.keras")
    model.save_weights(f"{tmp}/n.weights.h5")
    back = keras.models.load_model(f"{tmp}/n.keras")
    out["loaded"] = arr(back.predict(pixels, verbose=0))
    twin = normalized_model(keras)
    twin.set_weights([np.zeros_like(w) for w in twin.get_weights()])
    twin.load_weights(f"{tmp}/n.weights.h5")
    out["weights_loaded"] = arr(twin.predict(pixels, verbose=0))
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(IMAGES * 255, Y, epochs=2, batch_size=50, shuffle=False, verbose=0)
    out["fit"] = [round(v, 4) for v in history.history["loss"]]
    out["after_fit"] = arr(model.get_weights()[:3][0][:3])
    return out


def s_max_norm(keras):
    """kernel_constraint=max_norm(m) on the hidden layer only: applied after every SGD step (the
    weights after two epochs are Keras')."""
    C = keras.constraints
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(16, activation="relu", kernel_constraint=C.max_norm(0.3)),
                              keras.layers.Dense(10)])
    model.set_weights(W)
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y, epochs=2, batch_size=25, shuffle=False, verbose=0)
    kernel, _, out_kernel, _ = model.get_weights()
    return {"loss": [round(v, 4) for v in history.history["loss"]],
            "norms": arr(np.sqrt((kernel ** 2).sum(0))), "kernel": arr(kernel[:3, :4]),
            "out_kernel": arr(out_kernel[:3, :4]),
            "config": model.layers[0].get_config()["kernel_constraint"],
            "call": arr(C.MaxNorm(1.0)(W[2][:, :3]))}


def batch_norm_model(keras):
    """784-16-12-10 with a BatchNormalization of the first layer's pre-activations (an Activation
    layer after it) and of the second layer's outputs (its own momentum and epsilon), given
    weights: gamma, beta and the moving averages away from their initial values."""
    L = keras.layers
    model = keras.Sequential([keras.Input((784,)), L.Dense(16), L.BatchNormalization(),
                              L.Activation("relu"), L.Dense(12, activation="tanh"),
                              L.BatchNormalization(momentum=0.9, epsilon=0.01), L.Dropout(0.0),
                              L.Dense(10)])
    rng = np.random.default_rng(11)
    norm = [rng.uniform(0.5, 1.5, n).astype(np.float32) for n in (16, 16, 12, 12)]
    shift = [rng.normal(0, 0.2, n).astype(np.float32) for n in (16, 16, 12, 12)]
    model.set_weights([W[0], W[1], norm[0], shift[0], shift[1], norm[1],
                       rng.normal(0, 0.3, (16, 12)).astype(np.float32), shift[2],
                       norm[2], shift[3], shift[2] * 0.5, norm[3], W[2][:12], W[3]])
    return model


def s_batch_norm(keras):
    """Keras' BatchNormalization in an MLP: inference by the moving averages, training by the
    batch's statistics with the moving averages following (SGD, no shuffling: the losses, the
    weights and the moving averages after two epochs are Keras'), its weights, their paths and
    trainability, the summary's counts, its config."""
    model = batch_norm_model(keras)
    before = model.predict(X[:8], verbose=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.summary()
    history = model.fit(X, Y, epochs=2, batch_size=25, shuffle=False, verbose=0)
    w = model.get_weights()
    norm = model.layers[1]
    return {"before": arr(before), "loss": [round(v, 4) for v in history.history["loss"]],
            "accuracy": [round(v, 4) for v in history.history["accuracy"]],
            "kernel": arr(w[0][:3, :4]), "gamma": arr(w[2]), "beta": arr(w[3]),
            "moving_mean": arr(w[4]), "moving_variance": arr(w[5]),
            "second": [arr(a) for a in w[8:12]], "out_kernel": arr(w[12][:3, :4]),
            "after": arr(model.predict(X[:8], verbose=0)),
            "evaluate": [round(v, 4) for v in model.evaluate(X, Y, verbose=0)],
            "layer_call": arr(norm(np.asarray(X[:2] @ w[0] + w[1]))),
            "paths": [v.path for v in model.weights],
            "trainable": [v.path for v in model.trainable_weights],
            "non_trainable": [v.path for v in model.non_trainable_weights],
            "count": model.count_params(),
            "config": {k: v for k, v in norm.get_config().items() if k not in ("name", "dtype")}}


def s_input_batch_norm(keras):
    """Géron's batch-normalised MLP (Hands-On ML, ch. 11): a BatchNormalization of the flat
    inputs after Flatten, then one after each hidden Dense(relu); SGD, two epochs, the losses,
    weights, moving averages, predictions and summary are Keras'."""
    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.BatchNormalization(momentum=0.95),
                              L.Dense(16, activation="relu", kernel_initializer="he_normal"),
                              L.BatchNormalization(), L.Dense(10, activation="softmax")])
    rng = np.random.default_rng(5)
    first = [rng.uniform(0.5, 1.5, 784), rng.normal(0, 0.1, 784), rng.uniform(0.3, 0.6, 784),
             rng.uniform(0.05, 0.2, 784)]
    hidden = [rng.uniform(0.5, 1.5, 16), rng.normal(0, 0.1, 16), np.zeros(16), np.ones(16)]
    model.set_weights([np.asarray(a, np.float32) for a in
                       [*first, W[0], W[1], *hidden, W[2], W[3]]])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.summary()
    history = model.fit(IMAGES, Y, epochs=2, batch_size=25, shuffle=False, verbose=0)
    w = model.get_weights()
    return {"loss": [round(v, 4) for v in history.history["loss"]],
            "input_gamma": arr(w[0][:8]), "input_moving_mean": arr(w[2][:8]),
            "input_moving_variance": arr(w[3][:8]), "kernel": arr(w[4][:3, :4]),
            "moving_mean": arr(w[8]), "out": arr(w[10][:3, :4]),
            "predict": arr(model.predict(IMAGES[:4], verbose=0)),
            "evaluate": [round(v, 4) for v in model.evaluate(IMAGES, Y, verbose=0)],
            "count": model.count_params()}


def s_use_bias(keras):
    """Dense(use_bias=False) before a BatchNormalization (the textbook pairing) and as the output
    layer: its weights, counts, config and training (SGD, two epochs) are Keras'."""
    L = keras.layers
    model = keras.Sequential([keras.Input((784,)), L.Dense(16, use_bias=False), L.BatchNormalization(),
                              L.Activation("relu"), L.Dense(10, use_bias=False)])
    w = [W[0], np.ones(16, np.float32), np.zeros(16, np.float32), np.zeros(16, np.float32),
         np.ones(16, np.float32), W[2]]
    model.set_weights(w)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.summary()
    history = model.fit(X, Y, epochs=2, batch_size=25, shuffle=False, verbose=0)
    got = model.get_weights()
    return {"shapes": [list(a.shape) for a in got], "loss": [round(v, 4) for v in history.history["loss"]],
            "kernel": arr(got[0][:3, :4]), "beta": arr(got[2]), "out": arr(got[5][:3, :4]),
            "bias": model.layers[0].bias is None, "use_bias": model.layers[0].get_config()["use_bias"],
            "paths": [v.path for v in model.weights], "count": model.count_params(),
            "predict": arr(model.predict(X[:4], verbose=0))}


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}

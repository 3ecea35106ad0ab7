"""scikit-learn's MLPClassifier with the tutorial's recipe: two hidden layers of 64 ReLU units,
Adam 1e-3, batch 32, 5 passes over the data (max_iter counts epochs for the adam solver)."""

import time
import warnings

import sklearn
from common import args, load, report, timed_predict
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

path, epochs, batch, seed = args()
x_train, y_train, x_test, y_test = load(path)
clf = MLPClassifier(hidden_layer_sizes=(64, 64), activation="relu", solver="adam",
                    learning_rate_init=1e-3, batch_size=batch, max_iter=epochs, random_state=seed)
t_train, c_train = time.perf_counter(), time.process_time()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # 5 epochs is the recipe, not a failure
    clf.fit(x_train, y_train)
train_seconds = time.perf_counter() - t_train
cpu_seconds = time.process_time() - c_train
report(peer="scikit-learn MLPClassifier", version=sklearn.__version__,
       # MLPClassifier has no per-epoch hook; its epochs all cost the same (no compilation).
       epoch_seconds=[train_seconds / clf.n_iter_] * clf.n_iter_,
       epoch_cpu_seconds=[cpu_seconds / clf.n_iter_] * clf.n_iter_, train_seconds=train_seconds,
       test_accuracy=float(clf.score(x_test, y_test)),
       predict_seconds=timed_predict(clf.predict, x_test))
